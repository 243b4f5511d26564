"""A batch -> the stage's loss, over exactly the logits generation samples each target from.

    semantic: logits at positions 256.. of merged_embedding(text, history, ids), restricted to the 10,000
              semantic ids and EOS (SEMANTIC_PAD = 10000): generate_semantic's candidates
    coarse:   logits at the target positions, restricted to the 1024 ids of the target's codebook
              (even steps codebook 0, odd steps codebook 1): generate_coarse samples within it
    fine:     codebook k's head on its window, restricted to the 1024 codes, for k = 2..7: generate_fine's
Positions whose target is IGNORE (prompt, padding) take no loss. The loss is the mean over the batch's targets
(for the fine stage, over each codebook's, then over the six codebooks).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layout import CODEBOOK_SIZE, N_COARSE, N_FINE, SEMANTIC_HISTORY, SEMANTIC_PAD, SEMANTIC_VOCAB_SIZE
from .sequences import IGNORE


def semantic_logits(model, batch):
    """-> (logits (N, 10001), targets (N,)) at every target position of the batch."""
    x = model.merged_embedding(batch["text"], batch["history"], batch["ids"])  # (B, 256 + L, C)
    logits = model(embeds=x)[:, SEMANTIC_HISTORY:, : SEMANTIC_PAD + 1]  # (B, L, 10001)
    keep = batch["targets"] != IGNORE
    return logits[keep], batch["targets"][keep]


def coarse_logits(model, batch):
    """-> (logits (N, 1024) of each target's codebook, codes (N,) 0..1023)."""
    logits = model(batch["ids"])  # (B, L, V)
    keep = batch["targets"] != IGNORE
    flat = batch["targets"][keep] - SEMANTIC_VOCAB_SIZE  # codebook * 1024 + code
    books = logits[keep][:, SEMANTIC_VOCAB_SIZE : SEMANTIC_VOCAB_SIZE + N_COARSE * CODEBOOK_SIZE]
    rows = books.view(-1, N_COARSE, CODEBOOK_SIZE)[torch.arange(len(flat), device=flat.device), flat // CODEBOOK_SIZE]
    return rows, flat % CODEBOOK_SIZE


def fine_logits(model, batch):
    """-> [(logits (N_k, 1024), codes (N_k,)) for codebooks k = 2..7]."""
    out = []
    for j, k in enumerate(range(N_COARSE, N_FINE)):
        logits = model(k, batch["ids"][:, j])[..., :CODEBOOK_SIZE]  # (B, 1024, 1024)
        keep = batch["targets"][:, j] != IGNORE
        out.append((logits[keep], batch["targets"][:, j][keep]))
    return out


def stage_loss(stage, model, batch):
    if stage == "fine":
        return torch.stack([F.cross_entropy(x.float(), y) for x, y in fine_logits(model, batch)]).mean()
    x, y = (semantic_logits if stage == "semantic" else coarse_logits)(model, batch)
    return F.cross_entropy(x.float(), y)


def count_targets(batch):
    return int((batch["targets"] != IGNORE).sum())


class StageLoss(nn.Module):
    """The model and its stage's loss as one module, so DDP wraps the whole forward (the semantic stage's
    embeddings are summed outside GPT.forward)."""

    def __init__(self, stage, model):
        super().__init__()
        self.stage, self.model = stage, model

    def forward(self, batch):
        return stage_loss(self.stage, self.model, batch)
