"""nanobark.weights.convert: both source layouts, the real checkpoints' key tables, and hostile files."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import MakesFile, lie_about_shape, truncate_in_last_tensor
from nanobark import Bark
from nanobark.cli.convert import convert as convert_command
from nanobark.config import PRESETS
from nanobark.weights.checkpoint import load_config, load_stage, read_meta
from nanobark.weights.convert.folder import convert, from_transformers
from nanobark.weights.convert.gpt_keys import suno_model_args, suno_name
from nanobark.weights.convert.source import ConversionError
from nanobark.weights.hub import is_current

STAGES = ("semantic", "coarse", "fine", "codec")


def legacy_hub_state(hf_bark):
    """A state dict named like the Hub's pytorch_model.bin: weight_g/weight_v and the tied fine heads included."""
    sd = {}
    for k, v in hf_bark.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        sd[k] = v.clone()
    for i in range(7):
        sd[f"fine_acoustics.lm_heads.{i}.weight"] = sd[f"fine_acoustics.input_embeds_layers.{i + 1}.weight"]
    return sd


def assert_same_states(dir_a, dir_b):
    for stage in STAGES:
        a, b = (
            load_file(os.path.join(dir_a, f"{stage}.safetensors")),
            load_file(os.path.join(dir_b, f"{stage}.safetensors")),
        )
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), (stage, k)


def test_safetensors_snapshot_converts_and_loads(hf_snapshot, converted):
    assert read_meta(converted) is not None
    for stage in STAGES:
        assert os.path.exists(os.path.join(converted, f"{stage}.safetensors"))
    cfg = load_config(converted)
    assert (cfg.semantic.n_layer, cfg.semantic.n_embd, cfg.semantic.input_vocab_size) == (2, 32, 129_600)
    assert not [f for f in os.listdir(converted) if f.endswith(".tmp")]


def test_bin_snapshot_with_legacy_names_gives_same_weights(hf_bark, hf_snapshot, converted, tmp_path):
    src = tmp_path / "bin"
    src.mkdir()
    shutil.copy(os.path.join(hf_snapshot, "config.json"), src)
    torch.save(legacy_hub_state(hf_bark), src / "pytorch_model.bin")
    out = convert(str(src), str(tmp_path / "out"))
    assert_same_states(out, converted)


@torch.no_grad()
def test_suno_pt_triple_converts_and_matches_suno(hf_bark, converted, tmp_path):
    from bark.model import GPT as SunoGPT
    from bark.model import GPTConfig as SunoConfig

    src = tmp_path / "suno"
    src.mkdir()
    for stage, name in (("semantic", "text.pt"), ("coarse", "coarse.pt"), ("fine", "fine.pt")):
        c = load_config(converted).__dict__[stage]
        args = suno_model_args(c)
        state = {
            f"_orig_mod.{suno_name(k)}": v
            for k, v in load_file(os.path.join(converted, f"{stage}.safetensors")).items()
        }
        if stage == "fine":
            args.update(n_codes_total=8, n_codes_given=1)
            state.update(
                {
                    f"_orig_mod.lm_heads.{i}.weight": state[f"_orig_mod.transformer.wtes.{i + 1}.weight"]
                    for i in range(7)
                }
            )
        else:  # the original files also hold the (float) causal-mask buffers
            state.update({f"_orig_mod.transformer.h.{i}.attn.bias": torch.ones(1, 1, 4, 4) for i in range(c.n_layer)})
        torch.save(
            {"model": state, "model_args": args, "best_val_loss": np.float64(2.5), "optimizer": {"state": {}}},
            src / name,
        )
    hf_bark.codec_model.save_pretrained(src / "encodec_24khz")
    out = convert(str(src), str(tmp_path / "out"))
    assert_same_states(out, converted)
    # and nanobark equals Suno's GPT built from that very file
    ckpt = torch.load(src / "coarse.pt", weights_only=False)
    ref = SunoGPT(SunoConfig(**ckpt["model_args"]))
    ref.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}, strict=False)
    idx = torch.randint(0, 12_096, (1, 100))
    assert (load_stage(out, "coarse")(idx, last_only=True) - ref.eval()(idx)[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("preset, n_keys, layers, hidden", [("bark-small", 542, 12, 768), ("bark", 806, 24, 1024)])
@pytest.mark.parametrize("legacy", [False, True])
def test_key_tables_match_real_checkpoint_layouts(preset, n_keys, layers, hidden, legacy):
    """Every key of the real BarkModel (built on the meta device) is mapped, with nothing left over."""
    from transformers import BarkConfig, BarkModel

    sub = dict(
        num_layers=layers, num_heads=layers if layers == 12 else 16, hidden_size=hidden, bias=False, block_size=1024
    )
    hf_config = BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(sub, input_vocab_size=1_056, output_vocab_size=1_056),
    )
    with torch.device("meta"):
        sd = BarkModel(hf_config).state_dict()
    assert len(sd) == n_keys
    if legacy:
        sd = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in sd.items()
        }
    cfg, states = from_transformers(sd, hf_config.to_dict(), "meta model")
    assert cfg.to_dict() == PRESETS[preset]().to_dict()
    from nanobark.weights.checkpoint import STAGE_CLASSES

    for stage in STAGES:
        with torch.device("meta"):
            expected = STAGE_CLASSES[stage](getattr(cfg, stage)).state_dict()
        assert {k: tuple(v.shape) for k, v in states[stage].items()} == {k: tuple(v.shape) for k, v in expected.items()}


def test_missing_unexpected_and_misshaped_keys_are_named(hf_bark, hf_snapshot, tmp_path):
    sd = legacy_hub_state(hf_bark)
    del sd["semantic.layers.1.mlp.in_proj.weight"]
    sd["coarse_acoustics.layers.0.attn.out_proj.weight"] = torch.zeros(3, 3)
    sd["semantic.layers.9.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as e:
        from_transformers(sd, json.load(open(os.path.join(hf_snapshot, "config.json"))), "test.bin")
    msg = str(e.value)
    assert "semantic.layers.1.mlp.in_proj.weight" in msg and "missing" in msg
    assert "coarse_acoustics.layers.0.attn.out_proj.weight: shape (3, 3)" in msg
    assert "unexpected" in msg and "semantic.layers.9.extra.weight" in msg


def test_untied_fine_head_is_rejected(hf_bark, hf_snapshot):
    sd = legacy_hub_state(hf_bark)
    sd["fine_acoustics.lm_heads.3.weight"] = sd["fine_acoustics.lm_heads.3.weight"] + 1
    with pytest.raises(ConversionError, match="lm_heads.3.weight: differs"):
        from_transformers(sd, json.load(open(os.path.join(hf_snapshot, "config.json"))), "x")


def test_truncated_safetensors_is_reported(hf_snapshot, tmp_path):
    src = tmp_path / "trunc"
    shutil.copytree(hf_snapshot, src)
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="model.safetensors is not a safetensors file, or a damaged"):
        convert(str(src), str(tmp_path / "out"))
    assert read_meta(str(tmp_path / "out")) is None


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickle_that_runs_code_is_refused(hf_snapshot, tmp_path):
    src = tmp_path / "evil"
    src.mkdir()
    shutil.copy(os.path.join(hf_snapshot, "config.json"), src)
    marker = tmp_path / "pwned"
    torch.save({"semantic.lm_head.weight": _Evil(str(marker))}, src / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="refusing to load"):
        convert(str(src), str(tmp_path / "out"))
    assert not marker.exists()


def test_cli_reports_errors_and_succeeds(hf_snapshot, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # an argument problem: exit 2, before any work
        convert_command([str(tmp_path / "nope"), str(tmp_path / "out")])
    assert e.value.code == 2 and "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert convert_command([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "is not a Bark checkpoint" in capsys.readouterr().err
    assert convert_command([hf_snapshot, str(tmp_path / "ok")]) == 0
    assert read_meta(str(tmp_path / "ok")) is not None


@pytest.mark.parametrize("what", ["a folder of other files", "a file"])
def test_convert_from_python_refuses_an_output_it_did_not_write(what, hf_snapshot, tmp_path):
    """The API refuses as the command does: a conversion replaces its output whole, so that must be ours."""
    out = tmp_path / "thesis"
    if what == "a file":
        out.write_text("years of work")
    else:
        out.mkdir()
        (out / "chapter1.txt").write_text("years of work")
    with pytest.raises(ConversionError, match="exists and is not a nanobark conversion"):
        convert(hf_snapshot, out)
    assert (out.read_text() if what == "a file" else (out / "chapter1.txt").read_text()) == "years of work"
    assert sorted(os.listdir(tmp_path)) == ["thesis"]  # nothing written beside it either


@pytest.mark.parametrize("layout", ["transformers pytorch_model.bin", "Suno text.pt"])
def test_pickled_code_is_refused_on_both_conversion_paths(layout, hf_snapshot, tmp_path, monkeypatch):
    marker, src = tmp_path / "created_by_pickle", tmp_path / "src"
    src.mkdir()
    if layout.startswith("transformers"):
        shutil.copy(os.path.join(hf_snapshot, "config.json"), src)
        bad = src / "pytorch_model.bin"
        torch.save({"semantic.lm_head.weight": MakesFile(marker)}, bad)
    else:
        bad = src / "text.pt"
        torch.save({"model": {"transformer.wte.weight": MakesFile(marker)}, "model_args": {}}, bad)
        for name in ("coarse.pt", "fine.pt"):
            torch.save({}, src / name)
    torch.load(bad, weights_only=False)
    assert marker.exists()  # the payload is live...
    marker.unlink()
    monkeypatch.setenv("NANOBARK_CACHE", str(tmp_path / "cache"))
    refused = f"refusing to load {re.escape(str(bad))}.*could run code.*GLOBAL io.open"
    with pytest.raises(ConversionError, match=refused):
        Bark.from_pretrained(str(src), device="cpu")
    assert not marker.exists()  # ...but never set off
    left = [n for n in os.listdir(tmp_path / "cache" / "local") if not n.endswith(".lock")]
    assert left == []  # and the failed conversion left nothing behind


@pytest.mark.parametrize("damage", [truncate_in_last_tensor, lie_about_shape])
def test_damaged_source_safetensors_is_refused_by_name(damage, hf_snapshot, tmp_path):
    small = tmp_path / "small.safetensors"
    save_file({"semantic.lm_head.weight": torch.randn(8, 4), "semantic.layernorm_final.weight": torch.randn(4)}, small)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(hf_snapshot, "config.json"), src)
    damage(small, src / "model.safetensors")
    with pytest.raises(ConversionError, match="model.safetensors is not a safetensors file.*download it"):
        convert(str(src), str(tmp_path / "out"))
    assert read_meta(str(tmp_path / "out")) is None


def test_int_tensor_in_source_is_named(hf_bark, hf_snapshot):
    sd = dict(hf_bark.state_dict())
    sd["coarse_acoustics.lm_head.weight"] = sd["coarse_acoustics.lm_head.weight"].to(torch.int64)
    with pytest.raises(ConversionError, match="coarse_acoustics.lm_head.weight: dtype torch.int64, expected a float"):
        from_transformers(sd, json.load(open(os.path.join(hf_snapshot, "config.json"))), "model.safetensors")


def files_of(folder):
    """{name: (inode, mtime)} of a folder's files: the very same files, not only the same bytes."""
    return {
        n: (os.stat(os.path.join(folder, n)).st_ino, os.stat(os.path.join(folder, n)).st_mtime_ns)
        for n in sorted(os.listdir(folder))
    }


def test_an_interrupted_reconversion_leaves_the_earlier_conversion_whole(hf_snapshot, tmp_path, monkeypatch):
    """Converting again into a finished folder and failing half-way: the old folder is untouched (no mix)."""
    import safetensors.torch

    out = convert(hf_snapshot, str(tmp_path / "out"))
    before = files_of(out)
    real_save, calls = safetensors.torch.save_file, []

    def save_then_fail(state, path, metadata=None):  # the first stage file written, then a crash
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real_save(state, path, metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        convert(hf_snapshot, out)
    assert files_of(out) == before and sorted(os.listdir(tmp_path)) == ["out", "out.lock"]  # no leftover
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    convert(hf_snapshot, out)  # and a finished reconversion replaces it whole
    assert is_current(out) and files_of(out) != before and sorted(os.listdir(tmp_path)) == ["out", "out.lock"]


@pytest.mark.parametrize("out", [".", "inner", ".."])
def test_converting_into_the_source_or_around_it_is_refused(hf_snapshot, out):
    before = sorted(os.listdir(hf_snapshot))
    with pytest.raises(ConversionError, match="would replace the source"):
        convert(hf_snapshot, os.path.join(hf_snapshot, out))
    assert sorted(os.listdir(hf_snapshot)) == before


def test_atomic_folder_deletes_only_its_own_targets_leftovers(tmp_path):
    """Under model.lock, a .converting-model.* folder is a killed writer's; another target's is not."""
    from nanobark.weights.convert.folder import atomic_folder

    dead, other = ".converting-model.0123456789ab", ".converting-model.v2.0123456789ab"
    for name in (dead, other):
        (tmp_path / name).mkdir()
    atomic_folder(tmp_path / "model", lambda tmp: open(os.path.join(tmp, "a"), "w").close())
    assert sorted(os.listdir(tmp_path)) == sorted([other, "model", "model.lock"])
    assert os.listdir(tmp_path / "model") == ["a"]
    atomic_folder(tmp_path / "model", lambda tmp: pytest.fail("written again"), keep=os.path.isdir)


# ---- issue 18: a snapshot's config.json, vocabulary, index and presets are read and copied bounded (S8)


@pytest.mark.parametrize(
    "name", ["config.json", "vocab.txt", "speaker_embeddings_path.json", "speaker_embeddings/zz_semantic_prompt.npy"]
)
def test_a_snapshot_file_that_is_a_device_fifo_or_oversized_is_refused_by_name(name, hf_snapshot, tmp_path, capsys):
    """Before: a config.json linked to /dev/zero was read until memory ran out; vocab.txt or a preset linked to
    it was copied into the cache until its disk was full; a FIFO hung the conversion."""
    from helpers import endless_inputs

    for kind, bad in endless_inputs(str(tmp_path / "bad"), "f", oversized=33 << 20):
        src = tmp_path / f"snap-{kind}"
        shutil.copytree(hf_snapshot, src)
        os.replace(bad, src / name)  # the link, the FIFO or the big file, under the snapshot file's name
        assert convert_command([str(src), str(tmp_path / f"out-{kind}")]) == 1
        err = capsys.readouterr().err
        said = "larger than 32 MB" if kind == "oversized" else "not a regular file"
        assert said in err and name.split("/")[-1] in err and len(err.strip().splitlines()) == 1, (kind, err)
        assert not os.path.exists(tmp_path / f"out-{kind}")


def test_read_meta_of_a_config_json_linked_to_a_device_is_not_a_conversion(converted, tmp_path):
    out = tmp_path / "conv"
    shutil.copytree(converted, out)
    os.remove(out / "config.json")
    os.symlink("/dev/zero", out / "config.json")  # before: json.load read /dev/zero to the end
    assert read_meta(str(out)) is None and not is_current(str(out))


# ---- issue 18 (S9): a source config.json is checked against its weights before anything is built


@pytest.mark.parametrize(
    "stage, key, value, said",
    [
        ("semantic_config", "num_layers", 10**6, "n_layer is 1000000"),
        ("coarse_acoustics_config", "num_layers", 10**9, "n_layer is 1000000000"),
        ("fine_acoustics_config", "hidden_size", 1 << 20, "n_embd is 1048576"),
        ("semantic_config", "block_size", 10**7, "block_size is 10000000"),
        ("fine_acoustics_config", "n_codes_total", 10**5, "n_codes_total is 100000"),
        ("fine_acoustics_config", "n_codes_given", 9, "n_codes_given is 9"),  # was converted; failed mid-speech
    ],
)
def test_a_source_config_asking_for_more_than_its_weights_is_refused_before_building(
    stage, key, value, said, hf_snapshot, tmp_path, capsys, monkeypatch
):
    """Before: 10^6 layers were built on the meta device from the source config (112 s, 2.4 GB, bad_alloc)."""
    import nanobark.weights.convert.gpt_keys as gpt_keys

    src = tmp_path / "snap"
    shutil.copytree(hf_snapshot, src)
    config = json.loads((src / "config.json").read_text())
    config[stage][key] = value
    (src / "config.json").write_text(json.dumps(config))
    # every stage is checked before the first is built, so nothing is built at all
    monkeypatch.setattr(gpt_keys, "expected_shapes", lambda cls, cfg: pytest.fail(f"built a model of {cfg}"))
    assert convert_command([str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert said in err and "does not fit its weights" in err and len(err.strip().splitlines()) == 1, err


# ---- issue 18 (S7): a pickled tensor is bounded by its element count, not its storage


@pytest.mark.parametrize(
    "view",
    [
        lambda: torch.zeros(1).expand(32768, 8192),  # stride 0: 1 GiB converted, 4 bytes stored
        lambda: torch.zeros(3).as_strided((4096, 4096), (0, 0)),
        lambda: torch.zeros(2, 1).expand(2, 1 << 20),  # one axis expanded
    ],
)
def test_a_pickled_tensor_that_views_fewer_elements_than_it_has_is_refused(view, tmp_path):
    from nanobark.weights.convert.folder import read_tensors

    torch.save({"model": {"w": view(), "ok": torch.ones(3)}}, tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 10_000  # a few KB, gigabytes once .contiguous()
    with pytest.raises(ConversionError, match=r"model\.w of shape .* is a view of \d+ stored bytes"):
        read_tensors(str(tmp_path / "bomb.pt"))
    torch.save({"w": torch.arange(12.0).view(3, 4)[:, :2], "t": torch.ones(4, 2).t()}, tmp_path / "ok.pt")
    assert read_tensors(str(tmp_path / "ok.pt"))["w"].shape == (3, 2)  # slices and transposes are fine


def test_a_snapshot_of_expanded_tensors_is_refused_by_the_command_before_converting(
    hf_bark, hf_snapshot, tmp_path, capsys
):
    """Before: a 41 KB pytorch_model.bin of expanded views converted into 2.6 GB (S7)."""
    src = tmp_path / "snap"
    src.mkdir()
    shutil.copy(os.path.join(hf_snapshot, "config.json"), src)
    views = {k: torch.zeros(1, dtype=v.dtype).expand(v.shape) for k, v in hf_bark.state_dict().items()}
    torch.save(views, src / "pytorch_model.bin")
    assert convert_command([str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "pytorch_model.bin: tensor" in err and "expanded tensor" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
