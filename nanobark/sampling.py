"""Sampling, step by step as Suno's original does it: top-p, then top-k, then temperature, then multinomial.

Every function takes logits of shape (B, V). Draws use torch's global generator through exactly the
`torch.multinomial` calls the original makes, so a seed set with `torch.manual_seed` reproduces the
original's tokens; or a torch.Generator per sample, which draws the same tokens for the same seed.
The settings themselves (temperatures, top_k, top_p) are checked in settings.py.
"""

import numpy as np
import torch
import torch.nn.functional as F


def top_p_filter(logits, top_p):
    """Nucleus filtering on *untempered* probabilities, in float32 numpy like the original.

    Keeps the smallest prefix of tokens (sorted by logit, descending) whose probability mass
    exceeds top_p (all of them if none does); always keeps the most likely token.
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
    kth = torch.topk(logits, min(int(top_k), logits.shape[-1]), dim=-1).values[:, -1:]  # top_k=2.0 is 2
    return logits.masked_fill(logits < kth, -float("inf"))


def sample(logits, temp, top_k=None, top_p=None, generators=None, active=None):
    """logits (B, V) -> (tokens (B,) int64, probs (B, V) float32).

    generators: None draws the whole batch from torch's global generator in one call, as the
    original does. A list gives each row its own torch.Generator, so a sample's draws do not
    depend on the rest of the batch; `active` (list of bools) skips rows that have finished.
    """
    logits = logits.float()
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probs = F.softmax(logits / temp, dim=-1)
    if generators is None:
        return draw(probs), probs
    tokens = torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device)
    for b, g in enumerate(generators):
        if active is None or active[b]:
            tokens[b] = draw(probs[b], g)
    return tokens, probs


def draw(probs, generator=None):
    """One token per row of probs (..., V): torch.multinomial from the global generator, or from `generator`.

    With a generator, argmax(p / E), E ~ Exp(1): the very computation torch.multinomial(probs, 1) does on
    the CPU, so a generator seeded like the global one gives the same tokens.
    """
    if not bool(torch.isfinite(probs).all()):  # a seeded draw would silently turn NaN into token 0
        raise FloatingPointError(
            "the sampling probabilities hold NaN or Inf: the model's weights may be damaged, or the temperature "
            "is so small that logits / temperature overflows (use a temperature of 0.01 or more, or top_k=1)"
        )
    if generator is None:
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), num_samples=1).view(probs.shape[:-1])
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / q).argmax(dim=-1)
