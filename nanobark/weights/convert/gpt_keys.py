"""Key tables for the three GPTs: nanobark names <- transformers names, and <- Suno's original names.

nanobark's names are the original's (nanoGPT's) without the `transformer.` prefix, so the
tables are generated from a nanobark model built on the meta device: whatever the model
expects is exactly what gets looked up, with the shape it must have.
"""

import re

import torch

from ...config import GPTConfig
from ...fine import FineGPT
from ...gpt import GPT
from .source import expected_shapes

# nanobark name pattern -> transformers name (applied in order, first match only per rule)
_TO_TRANSFORMERS = [
    (r"^wtes\.", "input_embeds_layers."),
    (r"^wte\.", "input_embeds_layer."),
    (r"^wpe\.", "position_embeds_layer."),
    (r"^h\.(\d+)\.", r"layers.\1."),
    (r"\.ln_1\.", ".layernorm_1."),
    (r"\.ln_2\.", ".layernorm_2."),
    (r"\.attn\.c_attn\.", ".attn.att_proj."),
    (r"\.attn\.c_proj\.", ".attn.out_proj."),
    (r"\.mlp\.c_fc\.", ".mlp.in_proj."),
    (r"\.mlp\.c_proj\.", ".mlp.out_proj."),
    (r"^ln_f\.", "layernorm_final."),
]


def transformers_name(name):
    for pattern, repl in _TO_TRANSFORMERS:
        name = re.sub(pattern, repl, name)
    return name


def suno_name(name):
    return name if name.startswith("lm_head") else "transformer." + name


# the keys of Suno's checkpoint's `model_args` (its GPTConfig keywords) that nanobark's GPTConfig shares
SUNO_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "input_vocab_size", "output_vocab_size")
# transformers' sub-config keys for nanobark's GPTConfig fields, with transformers' defaults
HF_ARGS = {
    "n_layer": ("num_layers", 12),
    "n_head": ("num_heads", 12),
    "n_embd": ("hidden_size", 768),
    "block_size": ("block_size", 1024),
    "input_vocab_size": ("input_vocab_size", 10_048),
    "output_vocab_size": ("output_vocab_size", 10_048),
    "bias": ("bias", True),
}


def suno_model_args(cfg: GPTConfig):
    """The `model_args` of Suno's checkpoint (and its GPTConfig / FineGPTConfig keywords) for a nanobark config."""
    return {**{k: getattr(cfg, k) for k in SUNO_ARGS}, "dropout": 0.0}


def take_gpt(src, cfg: GPTConfig, fine: bool, rename, prefix=""):
    """Take one GPT's tensors out of `src`; returns the nanobark state dict.

    The fine model's heads are tied to embeddings 1..7 in nanobark. A source that also stores
    them (`lm_heads.{i}`, heads for codebooks i+1) must hold the same values.
    """
    out = {}
    for name, shape in expected_shapes(FineGPT if fine else GPT, cfg).items():
        t = src.take(prefix + rename(name), shape)
        if t is not None:
            out[name] = t
    if fine:
        for i in range(cfg.n_codes_total - cfg.n_codes_given):
            key = f"{prefix}lm_heads.{i}.weight"
            emb = out.get(f"wtes.{i + cfg.n_codes_given}.weight")
            if src.has(key):
                head = src.take(key, (cfg.output_vocab_size, cfg.n_embd))
                if head is not None and emb is not None and not head.is_meta and not torch.equal(head, emb):
                    src.misshaped.append(
                        f"{key}: differs from the embedding it is tied to "
                        f"(nanobark ties fine head {i} to wtes.{i + cfg.n_codes_given})"
                    )
    return out
