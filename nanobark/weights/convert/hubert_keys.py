"""HuBERT and quantizer checkpoints -> nanobark's Hubert and SemanticQuantizer state dicts (names in
nanobark/hubert.py and nanobark/quantizer.py).

HuBERT comes in two layouts that differ only in names: transformers' HubertModel (facebook/hubert-base-ls960;
a "hubert." prefix is accepted too) and fairseq's (the "model" of hubert_base_ls960.pt). NAMES below lists
both for every nanobark name. The positional conv is weight-normed over dim 2: a gain g (1, 1, 128), one per
kernel tap ("weight_g", or "parametrizations.weight.original0" in a fresh transformers 5.x model), and v;
we fold them into one plain weight.

Dropped on purpose, and nothing else: the layers after the one the quantizer reads (9, 10 and 11 of base),
and what only pre-training uses: transformers' masked_spec_embed; fairseq's mask_emb, final_proj and
label_embs_concat (the vector that replaces masked frames, and the projection and embeddings of the
k-means targets).

The quantizer's names are the community files' own (SemanticQuantizer was named after them): no table.
"""

import re

import torch

from ...config import HubertConfig
from ...hubert import Hubert
from ...quantizer import SemanticQuantizer, quantizer_config

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
    with torch.device("meta"):  # only for the names and shapes nanobark expects
        shapes = {k: tuple(v.shape) for k, v in Hubert(cfg).state_dict().items()}
    out = {}
    for name, shape in shapes.items():
        theirs = prefix + source_name(name, layout)
        if name == "pos_conv.weight":
            out[name] = _take_weight_norm(src, theirs.removesuffix(".weight"), shape)
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
    with torch.device("meta"):
        expected = SemanticQuantizer(cfg).state_dict()
    out = {k: src.take(k, tuple(v.shape)) for k, v in expected.items()}
    return cfg, {k: v for k, v in out.items() if v is not None}


def _take_weight_norm(src, key, shape):
    """Fold weight norm over dim 2: w = g * v / ||v||, the norm over dims 0 and 1 for each kernel tap.
    torch._weight_norm is what both references compute."""
    g_name, v_name = "weight_g", "weight_v"  # the Hub file, fairseq, transformers 4.x
    if src.has(f"{key}.parametrizations.weight.original0"):  # a fresh transformers 5.x model
        g_name, v_name = "parametrizations.weight.original0", "parametrizations.weight.original1"
    g = src.take(f"{key}.{g_name}", (1, 1, shape[2]))
    v = src.take(f"{key}.{v_name}", shape)
    return None if g is None or v is None else torch._weight_norm(v, g, 2)
