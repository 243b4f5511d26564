"""HuBERT's and the semantic quantizer's files -> nanobark's safetensors, for voice cloning.

    convert_hubert(SRC, OUT)      SRC: a facebook/hubert-base-ls960 snapshot folder (model.safetensors or
                                  pytorch_model.bin), one such file, or a fairseq checkpoint (.pt)
                                  -> OUT/hubert.safetensors, the first 9 layers only
    convert_quantizer(SRC, OUT)   SRC: a community quantizer, e.g. quantifier_hubert_base_ls960_14.pth
                                  -> OUT/quantizer.safetensors

Nothing is unpickled beyond plain tensors (folder.load_file: torch.load with weights_only=True). A fairseq
checkpoint is read if that is all it holds; one that also pickles fairseq's training state (its classes, e.g.
fairseq.data.dictionary.Dictionary) is refused with the class named: convert the transformers snapshot,
the same weights, instead. A quantizer file may carry a "<name>/.info" JSON member beside the tensors
(gitmylo's sizes and version); it is not read: the tensors' shapes say the same. Each file is written
under a temporary name and renamed into place; load them with checkpoint.load_hubert / load_quantizer.
"""

import os

import torch
from safetensors.torch import save_file

from ...config import HubertConfig
from ...files import write_atomic
from ..checkpoint import HUBERT_FILE, QUANTIZER_FILE, quantizer_problems
from .folder import load_file
from .hubert_keys import hubert_layout, take_hubert, take_quantizer
from .source import ConversionError, Source

HUBERT_FILES = ("model.safetensors", "pytorch_model.bin")  # in a Hub snapshot folder, first found first


def read_hubert(src, cfg=None):
    """A HuBERT checkpoint (a snapshot folder or one file, either layout) -> nanobark's Hubert state dict."""
    cfg = cfg or HubertConfig()
    path = _hubert_file(src)
    sd = load_file(path)
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]  # a fairseq checkpoint: the weights beside its config and training state
    found = hubert_layout(sd) if isinstance(sd, dict) else None
    if found is None:
        raise ConversionError(
            f"{path} is not a HuBERT checkpoint: expected transformers' HubertModel names "
            "(feature_projection.projection.weight, ...) or fairseq's (post_extract_proj.weight, ...)"
        )
    source = Source(sd, path, hint="Is this HuBERT base (facebook/hubert-base-ls960), not another size?")
    state = take_hubert(source, cfg, *found)
    source.finish()
    return state


def read_quantizer(path):
    """A community quantizer file (a state dict saved with torch.save) -> (QuantizerConfig, state dict)."""
    sd = load_file(path)
    if not isinstance(sd, dict) or not sd:
        raise ConversionError(f"{path} is not a quantizer: expected a state dict of tensors (lstm.*, fc.*)")
    source = Source(sd, path, hint="Is this a HuBERT quantizer for Bark (gitmylo's CustomTokenizer)?")
    cfg, state = take_quantizer(source)
    source.finish()
    problems = quantizer_problems(cfg)
    if problems:
        raise ConversionError(f"{path} is not a quantizer for Bark and HuBERT base: {'; '.join(problems)}")
    return cfg, state


def convert_hubert(src, out_dir, cfg=None):
    """Convert a HuBERT checkpoint into out_dir/hubert.safetensors; returns that file's path."""
    return _write(read_hubert(src, cfg), out_dir, HUBERT_FILE)


def convert_quantizer(src, out_dir):
    """Convert a community quantizer file into out_dir/quantizer.safetensors; returns that file's path."""
    return _write(read_quantizer(src)[1], out_dir, QUANTIZER_FILE)


def _hubert_file(src):
    if not os.path.isdir(src):
        if not os.path.isfile(src):
            raise FileNotFoundError(f"HuBERT checkpoint not found: {src}")
        return src
    for name in HUBERT_FILES:
        if os.path.isfile(os.path.join(src, name)):
            return os.path.join(src, name)
    raise ConversionError(
        f"{src} holds neither {' nor '.join(HUBERT_FILES)} (a facebook/hubert-base-ls960 snapshot)"
    )


def _write(state, out_dir, name):
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    return write_atomic(
        os.path.join(out_dir, name), lambda tmp: save_file(state, tmp, metadata={"format": "pt"})
    )
