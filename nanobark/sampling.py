"""Sampling, step by step as Suno's original does it: top-p, then top-k, then temperature, then multinomial.

Every function takes logits of shape (B, V). Draws use torch's global generator through exactly one
`torch.multinomial` call per step, the same call the original makes, so a seed set with
`torch.manual_seed` reproduces the original's tokens.
"""
import numpy as np
import torch
import torch.nn.functional as F


def top_p_filter(logits, top_p):
    """Nucleus filtering on *untempered* probabilities, in float32 numpy like the original.

    Keeps the smallest prefix of tokens (sorted by logit, descending) whose probability mass
    reaches top_p; always keeps the most likely token.
    """
    out = logits.detach().float().cpu().numpy().copy()
    for row in out:  # (V,) views, edited in place
        order = np.argsort(row)[::-1]
        sorted_logits = row[order]
        probs = np.exp(sorted_logits - sorted_logits.max())
        cumulative = np.cumsum(probs / probs.sum())
        remove = cumulative > top_p
        remove[1:] = remove[:-1].copy()  # shift right: keep the token that crosses top_p
        remove[0] = False
        row[order[remove]] = -np.inf
    return torch.from_numpy(out).to(logits.device)


def top_k_filter(logits, top_k):
    """Keep the top_k logits per row (and any ties with the k-th); the rest become -inf."""
    kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, -float("inf"))


def sample(logits, temp, top_k=None, top_p=None):
    """logits (B, V) -> (tokens (B,) int64, probs (B, V) float32)."""
    logits = logits.float()
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probs = F.softmax(logits / temp, dim=-1)
    return torch.multinomial(probs, num_samples=1)[:, 0], probs
