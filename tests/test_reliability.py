"""Hostile input and faults: untrusted checkpoints and voices, bad arguments, killed and concurrent conversions,
interrupted output, reproducibility across processes, and the CLI's exit codes. docs/reliability.md lists them."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest
import soundfile
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from helpers import ENV, GENERATE, HANG, ROOT, leftovers, python, run, wait_for
from nanobark import Bark
from nanobark.voices import PresetIndex, VoiceError, load_voice
from nanobark.weights.checkpoint import CheckpointError, load_stage, read_meta
from nanobark.weights.convert.folder import convert, from_transformers
from nanobark.weights.convert.source import ConversionError
from nanobark.weights.hub import convert_once, is_current

STAGES = ("semantic", "coarse", "fine", "codec")
SUNO_PROMPTS = os.path.join(
    importlib.util.find_spec("bark").submodule_search_locations[0], "assets", "prompts"
)


class MakesFile:
    """Unpickling this creates `path`: the stand-in for the code a hostile pickle would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def speak(model, out, seed, *args, **kw):
    """scripts/generate.py speaking one sentence with `model` into `out`, as a running process."""
    return python(
        GENERATE, "Hello, my dog is cute", "--model", model, "--out", out, "--seed", seed, *args, **kw
    )


# ---- untrusted checkpoints


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


def read_safetensors_parts(path):
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_safetensors_parts(path, header, body):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + body)


def last_tensor(header):
    return max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])


def truncate_in_last_tensor(src, dst):
    header, body = read_safetensors_parts(src)
    name = last_tensor(header)
    begin, end = header[name]["data_offsets"]
    write_safetensors_parts(dst, header, body[: (begin + end) // 2])
    return name


def lie_about_shape(src, dst):
    header, body = read_safetensors_parts(src)
    name = last_tensor(header)
    header[name]["shape"] = [2 * d for d in header[name]["shape"]]
    write_safetensors_parts(dst, header, body)
    return name


def edit_tensor(name, change):
    """A damage() that replaces tensor `name` by change(tensor), or removes it where that gives None."""

    def damage(src, dst):
        state = load_file(src)
        changed = change(state.pop(name, torch.zeros(2, 2)))  # a name not in the file is added
        if changed is not None:
            state[name] = changed
        save_file(state, dst)
        return name

    return damage


DAMAGE = {  # case -> (damage(src, dst) -> name of the damaged tensor, what the error says about it)
    # safetensors' own header check, which does not name the tensor
    "truncated": (truncate_in_last_tensor, "is not a safetensors file, or a damaged one"),
    "header lies about a shape": (lie_about_shape, "is not a safetensors file, or a damaged one"),
    "int tensor for a float weight": (
        edit_tensor("lm_head.weight", lambda t: t.to(torch.int32)),
        "tensor {} has dtype torch.int32, expected torch.float32",
    ),
    "wrong shape": (
        edit_tensor("wte.weight", lambda t: t[:-1]),
        r"tensor {} has shape \(12095, 32\), expected \(12096, 32\)",
    ),
    "missing tensor": (edit_tensor("ln_f.weight", lambda t: None), "missing tensor {}"),
    "unexpected tensor": (edit_tensor("h.9.mlp.c_fc.weight", lambda t: t), "unexpected tensor {}"),
}


def converted_with(converted, folder, stage, write):
    """A copy of the converted model (files linked) whose `stage` file is what write(path) puts there."""
    os.makedirs(folder)
    for name in os.listdir(converted):
        if name != f"{stage}.safetensors":
            os.symlink(os.path.join(converted, name), os.path.join(folder, name))
    write(os.path.join(folder, f"{stage}.safetensors"))
    return str(folder)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_converted_stage_names_file_and_tensor(case, converted, tmp_path):
    damage, said = DAMAGE[case]
    names = []
    path = converted_with(
        converted,
        tmp_path / "m",
        "coarse",
        lambda dst: names.append(damage(os.path.join(converted, "coarse.safetensors"), dst)),
    )
    with pytest.raises(
        CheckpointError,
        match="coarse.safetensors.*" + said.format(re.escape(repr(names[0]))) + ".*convert again",
    ) as e:
        load_stage(path, "coarse")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, said",
    [
        (b"", "is not a safetensors file"),
        (b"\x00" * 4, "is not a safetensors file"),
        (b"{}" * 100, "is not a safetensors file"),
        ((4).to_bytes(8, "little") + b"nope", "is not a safetensors file"),
        (None, "is missing"),
    ],
)
def test_empty_garbage_or_missing_stage_file(content, said, converted, tmp_path):
    def write(dst):
        if content is not None:
            open(dst, "wb").write(content)

    path = converted_with(converted, tmp_path / "m", "fine", write)
    with pytest.raises(CheckpointError, match=f"fine.safetensors.* {said}.*delete .* and convert again"):
        load_stage(path, "fine")


def test_pickle_in_place_of_a_converted_stage_is_not_unpickled(converted, tmp_path):
    marker = tmp_path / "created_by_pickle"
    path = converted_with(
        converted,
        tmp_path / "m",
        "coarse",
        lambda dst: torch.save({"lm_head.weight": MakesFile(marker)}, dst),
    )
    for load in (lambda: load_stage(path, "coarse"), lambda: Bark.from_pretrained(path, device="cpu")):
        with pytest.raises(
            CheckpointError, match="coarse.safetensors is not a safetensors .*pickle.*convert again"
        ):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("damage", [truncate_in_last_tensor, lie_about_shape])
def test_damaged_source_safetensors_is_refused_by_name(damage, hf_snapshot, tmp_path):
    small = tmp_path / "small.safetensors"
    save_file(
        {"semantic.lm_head.weight": torch.randn(8, 4), "semantic.layernorm_final.weight": torch.randn(4)},
        small,
    )
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
    with pytest.raises(
        ConversionError, match="coarse_acoustics.lm_head.weight: dtype torch.int64, expected a float"
    ):
        from_transformers(sd, json.load(open(os.path.join(hf_snapshot, "config.json"))), "model.safetensors")


ABSURD_CONFIG = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))  # a runaway build fails here, not the machine
path, stage, field, value = sys.argv[1:5]
with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
config[stage][field] = eval(value)  # a Python expression: "10**6", "[2] * 10**5"
with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
from nanobark import Bark
try:
    Bark.from_pretrained(path, device="cpu")
except Exception as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize("stage, field, value, said", [
    ("semantic", "n_layer", "10**6", "n_layer is 1000000 but the weights hold 2"),
    ("fine", "n_codes_total", "10**6", "n_codes_total is 1000000 but the weights hold 8"),
    ("coarse", "n_head", "3", "n_head 3 does not divide n_embd 32"),
    ("codec", "ratios", "[2] * 10**5", "len(ratios) is 100000 but the weights hold 4"),
])  # fmt: skip
@pytest.mark.slow
def test_a_config_asking_for_more_than_the_weights_hold_is_refused_before_building(
    converted, tmp_path, stage, field, value, said
):
    """The sizes in config.json are checked against the weights file's header before anything is built."""
    shutil.copytree(converted, tmp_path / "m")
    p = run("-c", ABSURD_CONFIG, tmp_path / "m", stage, field, value)
    assert p.returncode == 0 and p.stdout.startswith("CheckpointError"), p.stdout + p.stderr[-2000:]
    assert said in p.stdout and f"{stage}.safetensors" in p.stdout


def test_a_folder_of_an_older_format_is_refused_and_the_cache_converts_it_again(
    converted, hf_snapshot, tmp_path
):
    old = tmp_path / "old"
    shutil.copytree(converted, old)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps(dict(config, format_version=1)))
    with pytest.raises(
        CheckpointError, match=r"converted by another nanobark \(format 1; this one reads format 2\)"
    ):
        Bark.from_pretrained(str(old), device="cpu")
    cached = tmp_path / "cache" / "suno--bark-small"  # as the Hub path leaves it after an upgrade of nanobark
    shutil.copytree(old, cached)
    assert convert_once(hf_snapshot, str(cached)) == str(cached) and is_current(str(cached))
    assert json.loads((cached / "config.json").read_text())["format_version"] == 2


@pytest.mark.parametrize("damage", ["temperature", "weights"])
def test_nan_probabilities_stop_with_an_error_instead_of_token_0(converted, damage, monkeypatch):
    """A temperature that overflows the logits, or a NaN weight: seeded sampling used to draw token 0 silently."""
    bark = Bark.from_pretrained(converted, device="cpu")
    kwargs = dict(seed=0, max_duration=0.2)
    if damage == "temperature":  # now refused by the check, before any work
        with pytest.raises(
            ValueError, match="temperature 1e-39 is too small .* use at least 1e-06, or top_k=1"
        ):
            bark.generate("Hello", text_temp=1e-39, **kwargs)
        return
    with torch.no_grad():
        bark.models["coarse"].lm_head.weight[10_500, 0] = float("nan")
    with pytest.raises(
        FloatingPointError, match="NaN or Inf: the model's weights may be damaged, or the temperature"
    ):
        bark.generate("Hello", **kwargs)


@pytest.mark.parametrize("env, expected", [
    ({"NANOBARK_CACHE": "", "XDG_CACHE_HOME": ""}, "~/.cache/nanobark"),
    ({"NANOBARK_CACHE": "", "XDG_CACHE_HOME": "/x/cache"}, "/x/cache/nanobark"),
    ({"NANOBARK_CACHE": "/y/nb", "XDG_CACHE_HOME": ""}, "/y/nb"),
])  # fmt: skip
def test_an_empty_cache_variable_counts_as_unset(env, expected, monkeypatch):
    from nanobark.weights.hub import cache_root

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cache_root() == os.path.expanduser(expected)  # never "" (the working directory)


def test_damaged_config_json_says_reconvert(converted, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(converted, path, ignore=shutil.ignore_patterns("*.safetensors"))
    (path / "config.json").write_text(json.dumps({"format": "nanobark", "semantic": {}}))
    with pytest.raises(CheckpointError, match="config.json does not describe a Bark model.*convert again"):
        Bark.from_pretrained(str(path), device="cpu")
    (path / "config.json").write_text('{"format": "nanob')  # cut off while written: not a finished conversion
    assert read_meta(str(path)) is None


# ---- untrusted voice files (tests/test_voices.py has the rest)


def npz_voice(path, **changes):
    with np.load(os.path.join(SUNO_PROMPTS, "v2", "en_speaker_6.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.mark.parametrize(
    "changes, said",
    [
        (
            dict(fine_prompt=np.zeros((8, 464, 1), np.int64)),
            r"fine_prompt has shape \(8, 464, 1\), expected \(8, T\)",
        ),
        (dict(semantic_prompt=np.array(7)), r"semantic_prompt has shape \(\), expected \(S,\)"),
        (dict(coarse_prompt=np.full((2, 464), np.inf)), "coarse_prompt has dtype float64"),
        (
            dict(semantic_prompt=np.full(309, 2**63, np.uint64)),
            r"semantic_prompt values .* found 9223372036854775808",
        ),
        (dict(fine_prompt=np.zeros((8, 500), np.int64)), "coarse_prompt has 464 frames but fine_prompt 500"),
        (dict(coarse_prompt=None), r"missing \['coarse_prompt'\]"),
    ],
)
def test_hostile_voice_files_are_rejected_by_name(changes, said, tmp_path):
    with pytest.raises(VoiceError, match=f"v.npz: {said}"):
        load_voice(npz_voice(tmp_path / "v.npz", **changes))


# ---- arguments are checked before any work


@pytest.fixture
def forwards(bark):
    """Names of the modules of any stage that ran while the test did."""
    ran = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: ran.append(type(mod).__name__))
        for model in bark.models.values()
        for m in model.modules()
    ]
    yield ran
    for h in hooks:
        h.remove()


def test_the_forward_spy_sees_work(bark, forwards):
    bark.text_to_semantic("Hello", max_duration=0.02)
    assert forwards


@pytest.mark.parametrize(
    "kwargs, said",
    [
        (dict(text_temp=0), "temperature must be > 0, got 0"),
        (dict(waveform_temp=-0.5), "temperature must be > 0, got -0.5"),
        (dict(fine_temp=0.0), r"temperature must be > 0, got 0.0 \(use None for argmax\)"),
        (dict(text_temp=float("nan")), "temperature must be a finite number or None, got nan"),
        (dict(top_p=0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=0), "top_k must be an integer >= 1"),
        (dict(top_k=2.5), "top_k must be an integer >= 1"),
        (dict(min_eos_p=1.5), r"min_eos_p must be in \[0, 1\]"),
        (dict(text="  \n\t"), "text is empty"),
        (dict(text="\x00\u200b\ufeff"), "text produced no tokens"),
    ],
)
def test_bad_generate_arguments_fail_before_any_forward(bark, forwards, kwargs, said):
    with pytest.raises(ValueError, match=said):
        bark.generate(**{"text": "Hello", **kwargs})
    assert forwards == []


def test_preset_typo_lists_the_right_name_before_any_forward(bark, forwards, monkeypatch, tmp_path):
    monkeypatch.setattr(bark, "presets", PresetIndex.from_npz_dir(SUNO_PROMPTS))
    with pytest.raises(
        VoiceError, match="unknown voice preset 'v2/de_speakr_3'; close names: v2/de_speaker_3"
    ):
        bark.generate("Hallo", voice="v2/de_speakr_3")
    with pytest.raises(VoiceError, match="semantic_prompt values must lie in 0..9999"):
        bark.generate("Hallo", voice=npz_voice(tmp_path / "v.npz", semantic_prompt=np.full(309, -1)))
    assert forwards == []


@pytest.mark.parametrize(
    "kwargs, said",
    [
        (dict(dtype="float64"), "dtype must be one of float32, float16, bfloat16, got 'float64'"),
        (dict(dtype="fp8"), "got 'fp8'"),
        (dict(device="cuda"), "no CUDA GPU; use device='cpu'"),
        (dict(device="mps"), r"has no MPS \(Apple silicon"),  # was: a "corrupt model, delete it" message
        (dict(device="meta"), "device 'meta' is not supported"),
        (dict(device="xpu"), "device 'xpu' is not supported"),
        (dict(device="gpu"), "'gpu' is not a device"),
    ],
)
def test_bad_from_pretrained_arguments_fail_before_loading(kwargs, said, converted, monkeypatch):
    import nanobark.bark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_loading(*a, **k):
        raise AssertionError("the model was looked up before the arguments were checked")

    monkeypatch.setattr(nanobark.bark, "resolve", no_loading)
    with pytest.raises(ValueError, match=said):
        Bark.from_pretrained(converted, **kwargs)


# ---- conversions killed part-way, and run twice at once

KILLED_CONVERSION = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import safetensors.torch
real_save, calls = safetensors.torch.save_file, []

def save_then_hang(state, path, metadata=None):  # the first file whole, the second cut off: then hang until killed
    calls.append(path)
    if len(calls) == 1:
        return real_save(state, path, metadata)
    with open(path, "wb") as f:
        f.write(b"the first bytes of a file")
    open(sys.argv[4], "w").close()
    time.sleep(600)

safetensors.torch.save_file = save_then_hang
from nanobark.weights.hub import convert_once
convert_once(sys.argv[2], sys.argv[3])
"""


def files_of(folder):
    """{name: (inode, mtime)} of a folder's files: the very same files, not only the same bytes."""
    return {n: (os.stat(os.path.join(folder, n)).st_ino, os.stat(os.path.join(folder, n)).st_mtime_ns)
            for n in sorted(os.listdir(folder))}  # fmt: skip


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


FULL_DISK_AT_CONFIG = """
import json, resource, signal, sys
sys.path.insert(0, sys.argv[1])
import nanobark.weights.convert.folder as folder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
real_dumps = json.dumps

def dumps_then_disk_full(*a, **k):  # called for config.json only, the last file written
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.RLIM_INFINITY))
    return real_dumps(*a, **k)

folder.json.dumps = dumps_then_disk_full
try:
    folder.convert(sys.argv[2], sys.argv[3])
    print("converted")
except OSError as e:
    print("OSError", e.errno)
"""


@pytest.mark.slow
def test_a_full_disk_at_the_last_write_fails_and_leaves_nothing_finished(hf_snapshot, tmp_path):
    out = tmp_path / "out"
    p = run("-c", FULL_DISK_AT_CONFIG, ROOT, hf_snapshot, out)
    assert p.stdout.strip() == "OSError 27", p.stdout + p.stderr[-2000:]  # EFBIG, not "converted"
    assert not out.exists() and os.listdir(tmp_path) == ["out.lock"]  # nothing finished, no temp folder
    assert is_current(convert(hf_snapshot, str(out)))  # and the next run recovers


@pytest.mark.parametrize("out", [".", "inner", ".."])
def test_converting_into_the_source_or_around_it_is_refused(hf_snapshot, out):
    before = sorted(os.listdir(hf_snapshot))
    with pytest.raises(ConversionError, match="would replace the source"):
        convert(hf_snapshot, os.path.join(hf_snapshot, out))
    assert sorted(os.listdir(hf_snapshot)) == before


@pytest.mark.slow
def test_killed_conversion_is_redone_and_its_leftovers_removed(hf_snapshot, tmp_path):
    cache, started = tmp_path / "cache", tmp_path / "started"
    target = cache / "model"
    p = python("-c", KILLED_CONVERSION, ROOT, hf_snapshot, target, started)
    try:
        wait_for(lambda: started.exists() or p.poll() is not None)
        assert p.poll() is None, p.communicate()
    finally:
        p.kill()  # SIGKILL: no cleanup runs
        p.wait()
    assert not os.path.exists(target) and read_meta(str(target)) is None
    killed = leftovers(cache, ".converting-")
    assert len(killed) == 1 and "semantic.safetensors" in os.listdir(
        cache / killed[0]
    )  # the fault left junk...
    live = cache / ".converting-other.0123456789ab"  # and another folder is being converted right now
    live.mkdir()
    with FileLock(cache / "other.lock"):
        assert convert_once(hf_snapshot, str(target)) == str(target)
        # ...which the next conversion removes, sparing the live one
        assert leftovers(cache, ".converting-") == [live.name]
    assert read_meta(str(target)) is not None
    for stage in STAGES:
        load_stage(str(target), stage)


CONCURRENT_CONVERSION = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import safetensors.torch
real_save = safetensors.torch.save_file
barrier = sys.argv[4]

def save_together(state, path, metadata=None):  # a writer waits until the other process is converting too
    open(os.path.join(barrier, f"saved-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 600
    while sum(n.startswith("started") for n in os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    real_save(state, path, metadata)

safetensors.torch.save_file = save_together
from nanobark.weights.hub import convert_once
open(os.path.join(barrier, f"started-{os.getpid()}"), "w").close()
print(convert_once(sys.argv[2], sys.argv[3]))
"""


@pytest.mark.slow
def test_two_processes_converting_at_once_leave_one_valid_copy(hf_snapshot, converted, tmp_path):
    """The second one waits for the first one's lock, then takes its copy: one writer, no mix."""
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    target = cache / "model"
    procs = [python("-c", CONCURRENT_CONVERSION, ROOT, hf_snapshot, target, barrier) for _ in range(2)]
    results = [p.communicate(timeout=HANG) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert [out.strip() for out, _ in results] == [str(target)] * 2
    writers = {n.split("-")[1] for n in os.listdir(barrier) if n.startswith("saved")}
    assert len(writers) == 1 and len(os.listdir(barrier)) == 3  # both ran; only one converted
    assert sorted(os.listdir(cache)) == ["model", "model.lock"]  # one copy, no temporary folders
    for name in [f"{s}.safetensors" for s in STAGES] + ["config.json"]:
        assert open(target / name, "rb").read() == open(os.path.join(converted, name), "rb").read(), name


def test_unfinished_folder_in_the_way_is_replaced(hf_snapshot, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "semantic.safetensors").write_bytes(b"half")  # a conversion by hand, killed before config.json
    convert_once(hf_snapshot, str(target))
    assert read_meta(str(target)) is not None and load_stage(str(target), "semantic")


# ---- output files: written whole or not at all


def load_cli():
    import nanobark.cli

    return nanobark.cli


@pytest.mark.parametrize("fault, code", [(OSError("disk full"), 1), (KeyboardInterrupt(), 130)])
def test_failed_write_keeps_the_old_output(fault, code, converted, tmp_path, monkeypatch, capsys):
    cli, out = load_cli(), tmp_path / "speech.wav"
    out.write_bytes(b"old audio")
    monkeypatch.setattr(
        Bark, "generate", lambda self, *a, **k: np.full(3200, 0.25, np.float32)
    )  # not under test
    real_write = soundfile.write

    def write_half_then_fail(path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"RIFF and half a header")
        raise fault

    monkeypatch.setattr(soundfile, "write", write_half_then_fail)
    assert cli.main(["Hello", "--model", converted, "--out", str(out), "--quiet"]) == code
    assert out.read_bytes() == b"old audio" and os.listdir(tmp_path) == ["speech.wav"]
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setattr(soundfile, "write", real_write)  # and a run that succeeds replaces it, at the end
    assert cli.main(["Hello", "--model", converted, "--out", str(out), "--quiet"]) == 0
    assert soundfile.read(out)[0].shape == (3200,) and os.listdir(tmp_path) == ["speech.wav"]


# ---- the command line


@pytest.mark.parametrize(
    "args, said",
    [
        (["--text-temp", "0"], "--text-temp must be > 0"),
        (["--fine-temp", "-1"], "--fine-temp must be > 0"),
        (["--top-p", "1.5"], r"--top-p must be in \(0, 1\]"),
        (["--top-k", "0"], "--top-k must be an integer >= 1"),
        (["--dtype", "float64"], "invalid choice: 'float64'"),
        (["--seed", "x"], "invalid int value: 'x'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--device", "mps"], r"has no MPS \(Apple silicon"),  # was exit 1, after loading
        (["--device", "gpu"], "'gpu' is not a device"),
    ],
)
def test_usage_errors_exit_2_with_one_message(args, said, capsys):
    with pytest.raises(SystemExit) as e:
        load_cli().speak.parse_speak(["Hello", "--model", "suno/bark-small", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert ": error: " in err.splitlines()[-1] and re.search(
        said, err.splitlines()[-1]
    )  # after the usage lines


def test_an_endless_text_file_is_a_usage_error_not_a_full_memory(capsys):
    with pytest.raises(SystemExit) as e:
        load_cli().speak.parse_speak(["--file", "/dev/zero"])  # before: read until memory ran out
    assert e.value.code == 2 and "the text is over 1,000,000 characters" in capsys.readouterr().err


def test_unreadable_text_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name, said in [("latin1.txt", "can't decode byte 0xe9"), ("missing.txt", "No such file")]:
        with pytest.raises(SystemExit) as e:
            load_cli().speak.parse_speak(["--file", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "cannot read the text" in err and said in err and "Traceback" not in err


@pytest.mark.slow
def test_failures_exit_with_one_line_and_a_traceback_only_with_debug(converted, tmp_path):
    marker = tmp_path / "created_by_pickle"
    trap = np.array([MakesFile(marker)], dtype=object)
    np.save(tmp_path / "payload.npy", trap, allow_pickle=True)
    np.load(tmp_path / "payload.npy", allow_pickle=True)
    assert marker.exists()  # the payload is live
    marker.unlink()
    evil = npz_voice(tmp_path / "evil.npz", semantic_prompt=trap)
    base = [GENERATE, "Hello", "--model", converted, "--out", tmp_path / "x.wav", "--quiet"]
    damaged = shutil.copytree(converted, tmp_path / "damaged")  # a runtime failure: found only when loading
    with open(damaged / "coarse.safetensors", "r+b") as f:
        f.truncate(1000)
    procs = {
        "plain": python(*base, "--voice", evil),
        "debug": python(*base[:3], damaged, *base[4:], "--debug"),
    }
    errs = {k: p.communicate(timeout=HANG)[1] for k, p in procs.items()}
    # a voice file is an argument: checked before the model loads, a usage error (it was exit 1, after loading)
    assert [p.returncode for p in procs.values()] == [2, 1], errs
    assert (
        errs["plain"].startswith(f"nanobark: error: {evil} holds pickled data")
        and "never loaded" in errs["plain"]
    )
    assert "Traceback" not in errs["plain"] and len(errs["plain"].strip().splitlines()) == 1
    assert "Traceback" in errs["debug"] and "CheckpointError: " in errs["debug"] and "coarse" in errs["debug"]
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == ["damaged", "evil.npz", "payload.npy"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_sigterm_or_sighup_mid_generation_stops_cleanly(converted, tmp_path, sig):
    out_dir, err = tmp_path / "out", tmp_path / "stderr.txt"
    out_dir.mkdir()
    out = out_dir / "speech.wav"
    out.write_bytes(b"old audio")
    bars_on = {k: v for k, v in ENV.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    with open(err, "w") as f:  # no --max-duration: minutes of generation, unless stopped
        p = speak(converted, out, 0, stdout=subprocess.DEVNULL, stderr=f, env=bars_on)
    try:
        wait_for(
            lambda: "semantic" in err.read_text() or p.poll() is not None
        )  # its progress bar: generating
        assert p.poll() is None and out.read_bytes() == b"old audio"
        p.send_signal(getattr(signal, sig))
        assert p.wait(timeout=HANG) == 128 + getattr(signal, sig)  # 130, 143, 129
    finally:
        p.kill()
    text = err.read_text()
    assert (
        "interrupted; nothing was written" in text
        and "Traceback" not in text
        and "KeyboardInterrupt" not in text
    )
    assert out.read_bytes() == b"old audio" and os.listdir(out_dir) == ["speech.wav"]


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_in_two_processes(converted, tmp_path):
    outs = [tmp_path / f"run{i}.wav" for i in range(2)]
    procs = [
        speak(
            converted,
            out,
            7,
            "--voice",
            "v2/en_speaker_6",
            "--max-duration",
            "0.1",
            "--quiet",
            env={**ENV, "PYTHONHASHSEED": str(i)},
        )  # fmt: skip
        for i, out in enumerate(outs)
    ]
    results = [p.communicate(timeout=HANG) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    first, second = (o.read_bytes() for o in outs)
    assert first == second
    audio, _ = soundfile.read(outs[0])
    assert len(audio) > 0 and audio.std() > 0  # real audio, not silence that any seed would give
