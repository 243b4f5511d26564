"""Random weights for checkpoints with the real layout (the tests and scripts/benchmark.py use them).

A freshly built model hides bugs: LayerNorms are ones and zeros, EnCodec's codebooks are all zero
and weight-norm gains equal |v|, so a broken decode or a dropped LayerNorm bias would go unseen.
"""

import torch


@torch.no_grad()
def randomize_(model, std=0.05):
    """Random values in every parameter and codebook of a transformers / encodec / Suno model, in place.

    Tied tensors stay tied (they are the same Parameter); LSTM weights keep their own init.
    """
    for name, p in model.named_parameters():
        if "parametrizations.weight.original0" in name or name.endswith("weight_g"):
            p.mul_(torch.empty_like(p).uniform_(0.5, 2.0))
        elif "norm" in name or ".ln_" in name:
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        elif "parametrizations" not in name and "weight_v" not in name and "lstm" not in name:
            p.normal_(0.0, std)
    for name, b in model.named_buffers():
        # transformers' "...codebook.embed", encodec's "..._codebook.embed"
        if name.endswith("codebook.embed"):
            b.normal_(0.0, 1.0)
    return model
