"""nanobark/weights/checkpoint.py: one loader for every file, so every failure names its file and says once
what to do."""

import json
import os
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import MakesFile, lie_about_shape, run, truncate_in_last_tensor
from nanobark import Bark
from nanobark.weights.checkpoint import (
    CheckpointError,
    load_encoder,
    load_hubert,
    load_quantizer,
    load_stage,
    read_meta,
)

RECONVERT, RECLONE = "and convert again", "the next clone converts it again"


@pytest.mark.parametrize(
    "load, damaged, hint",
    [
        (lambda path: load_stage(path, "coarse"), "coarse.safetensors", RECONVERT),
        (load_encoder, "encoder.safetensors", RECONVERT),
        (load_encoder, "codec.safetensors", RECONVERT),  # the encoder's codebooks are read from there
        (load_hubert, "hubert.safetensors", RECLONE),
        (load_quantizer, "quantizer.safetensors", RECLONE),
    ],
)
def test_every_loader_names_the_damaged_file_and_says_once_what_to_do(converted, tmp_path, load, damaged, hint):
    shutil.copytree(converted, tmp_path / "m")
    (tmp_path / "m" / damaged).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError) as e:
        load(str(tmp_path / "m"))
    said = str(e.value)
    assert f"{damaged} is not a safetensors file" in said and said.count(hint) == 1, said


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
        CheckpointError, match="coarse.safetensors.*" + said.format(re.escape(repr(names[0]))) + ".*convert again"
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
        converted, tmp_path / "m", "coarse", lambda dst: torch.save({"lm_head.weight": MakesFile(marker)}, dst)
    )
    for load in (lambda: load_stage(path, "coarse"), lambda: Bark.from_pretrained(path, device="cpu")):
        with pytest.raises(CheckpointError, match="coarse.safetensors is not a safetensors .*pickle.*convert again"):
            load()
    assert not marker.exists()


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


@pytest.mark.parametrize(
    "stage, field, value, said",
    [
        ("semantic", "n_layer", "10**6", "n_layer is 1000000 but the weights hold 2"),
        ("fine", "n_codes_total", "10**6", "n_codes_total is 1000000 but the weights hold 8"),
        ("fine", "n_codes_given", "9", "n_codes_given is 9 but the fine stage predicts from codebook 2 on"),
        ("coarse", "n_head", "3", "n_head 3 does not divide n_embd 32"),
        ("codec", "ratios", "[2] * 10**5", "len(ratios) is 100000 but the weights hold 4"),
    ],
)
@pytest.mark.slow
def test_a_config_asking_for_more_than_the_weights_hold_is_refused_before_building(
    converted, tmp_path, stage, field, value, said
):
    """The sizes in config.json are checked against the weights file's header before anything is built."""
    shutil.copytree(converted, tmp_path / "m")
    p = run("-c", ABSURD_CONFIG, tmp_path / "m", stage, field, value)
    assert p.returncode == 0 and p.stdout.startswith("CheckpointError"), p.stdout + p.stderr[-2000:]
    assert said in p.stdout and f"{stage}.safetensors" in p.stdout


def test_damaged_config_json_says_reconvert(converted, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(converted, path, ignore=shutil.ignore_patterns("*.safetensors"))
    (path / "config.json").write_text(json.dumps({"format": "nanobark", "semantic": {}}))
    with pytest.raises(CheckpointError, match="config.json does not describe a Bark model.*convert again"):
        Bark.from_pretrained(str(path), device="cpu")
    (path / "config.json").write_text('{"format": "nanob')  # cut off while written: not a finished conversion
    assert read_meta(str(path)) is None
