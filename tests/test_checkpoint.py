"""nanobark/weights/checkpoint.py: one loader for every file, so every failure names its file and says once
what to do."""

import shutil

import pytest

from nanobark.weights.checkpoint import CheckpointError, load_encoder, load_hubert, load_quantizer, load_stage

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
def test_every_loader_names_the_damaged_file_and_says_once_what_to_do(
    converted, tmp_path, load, damaged, hint
):
    shutil.copytree(converted, tmp_path / "m")
    (tmp_path / "m" / damaged).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError) as e:
        load(str(tmp_path / "m"))
    said = str(e.value)
    assert f"{damaged} is not a safetensors file" in said and said.count(hint) == 1, said
