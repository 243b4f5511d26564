"""The stage's model to train, its optimizer and its learning rate: nanoGPT's choices.

AdamW decays the matrices only (Linear weights and embedding tables): LayerNorm gains and biases are
left alone, as weight decay pulling a gain towards 0 only hurts. The learning rate warms up linearly, then
decays along a cosine to min_lr.
"""

import math
from dataclasses import replace

import torch
import torch.nn as nn

from ..fine import FineGPT
from ..gpt import GPT
from ..weights.checkpoint import load_stage


def build(stage, config, init_from=None, sizes=None):
    """The stage's model, float32 on the CPU, trainable: the weights of the converted folder `init_from`
    (fine-tuning), or, with sizes {n_layer, n_head, n_embd}, a new model of those sizes from scratch with
    nanoGPT's initialisation (the vocabularies and block_size stay the stage's). -> (model, its GPTConfig)."""
    if sizes:
        cfg = replace(getattr(config, stage), **sizes)
        model = (FineGPT if stage == "fine" else GPT)(cfg)
        init_weights(model, cfg.n_layer)
    else:
        model, cfg = load_stage(init_from, stage, config), getattr(config, stage)
    return model.requires_grad_(True).train(), cfg


def freeze_blocks(model, n):
    """Leave the lowest n transformer blocks out of training (their weights stay the starting model's)."""
    if not 0 <= n <= len(model.h):
        raise ValueError(f"freeze_layers must be 0..{len(model.h)} (the model's blocks), got {n}")
    for block in model.h[:n]:
        block.requires_grad_(False)
    return model


@torch.no_grad()
def init_weights(model, n_layer):
    """nanoGPT's: N(0, 0.02) weights and zero biases, residual projections scaled by 1/sqrt(2 n_layer)."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif "ln_" in name:
            p.fill_(1.0)
        else:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            p.normal_(0.0, std)


def make_optimizer(model: nn.Module, lr, weight_decay, betas, device_type="cpu"):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda" or None)


def lr_at(step, lr, min_lr, warmup_steps, decay_steps):
    """Linear warm-up over warmup_steps, cosine decay to min_lr at decay_steps, min_lr after."""
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
