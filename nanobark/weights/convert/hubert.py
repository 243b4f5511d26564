"""HuBERT's and the semantic quantizer's files -> nanobark's safetensors, for voice cloning.

    convert_hubert(SRC, OUT)      SRC: a facebook/hubert-base-ls960 snapshot folder (model.safetensors or
                                  pytorch_model.bin), one such file, or a fairseq checkpoint (.pt)
                                  -> OUT/hubert.safetensors, the first 9 layers only
    convert_quantizer(SRC, OUT)   SRC: a community quantizer, e.g. quantifier_hubert_base_ls960_14.pth
                                  -> OUT/quantizer.safetensors

HuBERT comes in two layouts that differ only in names: transformers' HubertModel (facebook/hubert-base-ls960;
a "hubert." prefix is accepted too) and fairseq's (the "model" of hubert_base_ls960.pt). NAMES below lists
both for every nanobark name (nanobark/hubert.py). The positional conv is weight-normed over dim 2: a gain
g (1, 1, 128), one per kernel tap, and v; we fold them into one plain weight.

Dropped on purpose, and nothing else: the layers after the one the quantizer reads (9, 10 and 11 of base),
and what only pre-training uses: transformers' masked_spec_embed; fairseq's mask_emb, final_proj and
label_embs_concat (the vector that replaces masked frames, and the projection and embeddings of the
k-means targets). The quantizer's names are the community files' own (nanobark/quantizer.py was named after
them): no table.

Nothing is unpickled beyond plain tensors (folder.read_tensors: torch.load with weights_only=True). A fairseq
checkpoint is read if that is all it holds; one that also pickles fairseq's training state (its classes, e.g.
fairseq.data.dictionary.Dictionary) is refused with the class named: convert the transformers snapshot,
the same weights, instead. A quantizer file may carry a "<name>/.info" JSON member beside the tensors
(gitmylo's sizes and version); it is not read: the tensors' shapes say the same. Each file is written
under a temporary name and renamed into place; load them with checkpoint.load_hubert / load_quantizer.
"""

import os
import re

import torch
from safetensors.torch import save_file

from ...config import HubertConfig
from ...files import write_atomic
from ...hubert import Hubert
from ...quantizer import SemanticQuantizer, quantizer_config
from ..checkpoint import HUBERT_FILE, QUANTIZER_FILE, quantizer_problems
from .folder import read_tensors
from .source import ConversionError, Source, expected_shapes

HUBERT_FILES = ("model.safetensors", "pytorch_model.bin")  # in a Hub snapshot folder, first found first


LAYOUTS = ("transformers", "fairseq")
# nanobark name prefix -> (transformers', fairseq's); {} is the layer's (or conv's) index
NAMES = [
    ("convs.{}.", "feature_extractor.conv_layers.{}.conv.", "feature_extractor.conv_layers.{}.0."),
    ("conv_norm.", "feature_extractor.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2."),
    ("feature_norm.", "feature_projection.layer_norm.", "layer_norm."),
    ("proj.", "feature_projection.projection.", "post_extract_proj."),
    ("pos_conv.", "encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."),
    ("ln.", "encoder.layer_norm.", "encoder.layer_norm."),
    ("layers.{}.attn.q.", "encoder.layers.{}.attention.q_proj.", "encoder.layers.{}.self_attn.q_proj."),
    ("layers.{}.attn.k.", "encoder.layers.{}.attention.k_proj.", "encoder.layers.{}.self_attn.k_proj."),
    ("layers.{}.attn.v.", "encoder.layers.{}.attention.v_proj.", "encoder.layers.{}.self_attn.v_proj."),
    ("layers.{}.attn.out.", "encoder.layers.{}.attention.out_proj.", "encoder.layers.{}.self_attn.out_proj."),
    ("layers.{}.ln_1.", "encoder.layers.{}.layer_norm.", "encoder.layers.{}.self_attn_layer_norm."),
    ("layers.{}.mlp.fc1.", "encoder.layers.{}.feed_forward.intermediate_dense.", "encoder.layers.{}.fc1."),
    ("layers.{}.mlp.fc2.", "encoder.layers.{}.feed_forward.output_dense.", "encoder.layers.{}.fc2."),
    ("layers.{}.ln_2.", "encoder.layers.{}.final_layer_norm.", "encoder.layers.{}.final_layer_norm."),
]
TRAINING_ONLY = {
    "transformers": ("masked_spec_embed",),
    "fairseq": ("mask_emb", "final_proj.weight", "final_proj.bias", "label_embs_concat"),
}


def source_name(name, layout):
    """nanobark name -> the source's: layers.3.ln_1.bias -> fairseq's encoder.layers.3.self_attn_layer_norm.bias"""
    m = re.match(r"([a-z_]+)\.(\d+)\.(.*)", name)  # an index after the first word: layers.3.ln_1.bias
    abstract, index = (f"{m[1]}.{{}}.{m[3]}", m[2]) if m else (name, None)
    for ours, *theirs in NAMES:
        if abstract.startswith(ours):
            return theirs[LAYOUTS.index(layout)].format(index) + abstract[len(ours) :]
    raise KeyError(f"no source name for nanobark's {name!r}")  # the table lacks a row: a bug here


def hubert_layout(keys):
    """(layout, prefix) of a HuBERT state dict from its keys, or None if it is neither layout."""
    for prefix in ("", "hubert."):
        if f"{prefix}feature_projection.projection.weight" in keys:
            return "transformers", prefix
    return ("fairseq", "") if "post_extract_proj.weight" in keys else None


def take_hubert(src, cfg: HubertConfig, layout, prefix=""):
    """Take every HuBERT tensor out of `src` (a convert.source.Source); returns nanobark's Hubert state dict."""
    out = {}
    for name, shape in expected_shapes(Hubert, cfg).items():
        theirs = prefix + source_name(name, layout)
        if name == "pos_conv.weight":  # over dim 2: one gain per kernel tap
            out[name] = src.take_weight_norm(theirs.removesuffix(".weight"), shape, 2)
        else:
            out[name] = src.take(theirs, shape)
    layer = re.compile(re.escape(prefix) + r"encoder\.layers\.(\d+)\..*")
    unused = {prefix + k for k in TRAINING_ONLY[layout]}

    def dropped(k):  # the layers after the last one built, and pre-training's tensors
        m = layer.fullmatch(k)
        return k in unused or (m is not None and int(m[1]) >= cfg.n_layer)

    src.discard(dropped)
    return {k: v for k, v in out.items() if v is not None}  # anything missing is in src's report


def take_quantizer(src):
    """Take a community quantizer's tensors out of `src`: (QuantizerConfig read from their shapes, state dict)."""
    cfg = quantizer_config({k: tuple(v.shape) for k, v in src.sd.items() if isinstance(v, torch.Tensor)})
    out = {k: src.take(k, shape) for k, shape in expected_shapes(SemanticQuantizer, cfg).items()}
    return cfg, {k: v for k, v in out.items() if v is not None}


def read_hubert(src, cfg=None):
    """A HuBERT checkpoint (a snapshot folder or one file, either layout) -> nanobark's Hubert state dict."""
    cfg = cfg or HubertConfig()
    path = _hubert_file(src)
    sd = read_tensors(path)
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
    sd = read_tensors(path)
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
    raise ConversionError(f"{src} holds neither {' nor '.join(HUBERT_FILES)} (a facebook/hubert-base-ls960 snapshot)")


def _write(state, out_dir, name):
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    return write_atomic(os.path.join(out_dir, name), lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
