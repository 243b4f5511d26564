"""The non-causal fine GPT: predicts EnCodec codebooks 2..7 from the ones before them.

The input is all 8 codebooks at every frame, (B, T, 8). To predict codebook k, the
embeddings of codebooks 0..k are summed (codebook k itself still holds the filler 1024,
history, or an earlier window's guess), the sum goes through bidirectional blocks, and
head k reads out logits for every frame. Head k is tied to embedding table k, as in the
original, so the heads are simply `wtes[k].weight`.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .gpt import Block, LayerNorm


class FineGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wtes = nn.ModuleList(
            [nn.Embedding(config.input_vocab_size, config.n_embd) for _ in range(config.n_codes_total)]
        )
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        # the fine model's LayerNorms always have a bias, whatever config.bias says (a quirk of the original)
        self.h = nn.ModuleList([Block(config, ln_bias=True) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, bias=True)  # always has a bias, like the original

    def forward(self, pred_idx, idx):
        """pred_idx: the codebook to predict (n_codes_given..n_codes_total-1); idx: (B, T, 8) codes.

        Returns logits (B, T, V) for codebook pred_idx at every frame.
        """
        c = self.config
        if not c.n_codes_given <= pred_idx < c.n_codes_total:
            raise ValueError(f"pred_idx must be in [{c.n_codes_given}, {c.n_codes_total}), got {pred_idx}")
        B, T, n_codes = idx.shape
        if n_codes != c.n_codes_total or T > c.block_size:
            raise ValueError(
                f"expected codes of shape (B, T<={c.block_size}, {c.n_codes_total}), got {tuple(idx.shape)}"
            )
        # stack then sum, the reference's reduction order, so the sums are bit-identical
        x = torch.stack([self.wtes[i](idx[:, :, i]) for i in range(pred_idx + 1)], dim=-1)  # (B, T, C, k+1)
        x = x.sum(dim=-1)  # (B, T, C)
        x = x + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wtes[pred_idx].weight)
