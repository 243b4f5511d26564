"""Read a directory written by weights_convert: config.json plus one safetensors file per stage."""
import json
import os

import torch
from safetensors.torch import load_file

from .codec import Codec
from .config import BarkConfig
from .fine import FineGPT
from .gpt import GPT

STAGE_CLASSES = {"semantic": GPT, "coarse": GPT, "fine": FineGPT, "codec": Codec}


def is_converted(path):
    """True for a finished conversion (config.json is written last)."""
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        with open(cfg) as f:
            return json.load(f).get("format") == "nanobark"
    except (OSError, ValueError):
        return False


def load_config(path) -> BarkConfig:
    if not is_converted(path):
        raise FileNotFoundError(f"{path} is not a nanobark checkpoint (no config.json written by weights_convert); "
                                f"convert one with: python weights_convert/convert.py SRC {path}")
    with open(os.path.join(path, "config.json")) as f:
        return BarkConfig.from_dict(json.load(f))


def load_stage(path, stage, config=None, device="cpu", dtype=torch.float32):
    """Build one stage ('semantic', 'coarse', 'fine' or 'codec') and load its weights, in eval mode."""
    config = config or load_config(path)
    with torch.device("meta"):
        model = STAGE_CLASSES[stage](getattr(config, stage))
    state = load_file(os.path.join(path, f"{stage}.safetensors"), device=str(device))
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
