"""A trained stage -> a converted model folder that Bark.from_pretrained, `nanobark --model`, `serve` and
`synthesize` load as any other.

The folder is the starting model's, file for file and byte for byte (the other stages, the codec, the
encoder, the tokenizer, the voice presets), but for the trained stage's safetensors and config.json (its
sizes, if it was trained from scratch). It is written beside the target and renamed into place
(atomic_folder), and the new stage is loaded back through the loader the model's users run, before.
"""

import json
import os
from dataclasses import asdict

import torch

from ..files import copy_bounded, write_atomic
from ..weights.checkpoint import load_stage, read_meta
from ..weights.convert.folder import atomic_folder

MAX_FILE = 1 << 36  # 64 GB: the largest weights file of a converted folder is a few GB


def export(base, out, stage, model, cfg):
    """Write `base` with `stage` replaced by `model` (GPTConfig `cfg`) to the folder `out`; returns out."""
    meta = read_meta(base)
    if meta is None:
        raise FileNotFoundError(f"{base} is not a converted model folder; pass the folder training started from")
    meta[stage] = asdict(cfg)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    replaced = {f"{stage}.safetensors", "config.json"}

    def write(tmp):
        from safetensors.torch import save_file

        for folder, _, files in os.walk(base):
            rel = os.path.relpath(folder, base)
            os.makedirs(os.path.join(tmp, rel), exist_ok=True)
            for f in files:
                if not (rel == "." and f in replaced):
                    copy_bounded(os.path.join(folder, f), os.path.join(tmp, rel, f), MAX_FILE, "the model file")
        write_atomic(os.path.join(tmp, f"{stage}.safetensors"), lambda t: save_file(state, t, {"format": "pt"}))
        write_atomic(os.path.join(tmp, "config.json"), lambda t: _write_json(t, meta))  # last, as convert does
        load_stage(tmp, stage)  # it loads as a user's would, or the folder is never renamed into place

    return atomic_folder(out, write)


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2))
