"""Sampling, step by step as Suno's original does it: top-p, then top-k, then temperature, then multinomial.

Every function takes logits of shape (B, V). Draws use torch's global generator through exactly the
`torch.multinomial` calls the original makes, so a seed set with `torch.manual_seed` reproduces the
original's tokens; or a torch.Generator per sample, which draws the same tokens for the same seed.
The check_* functions are the one place where sampling settings are validated (the API and the CLI).
"""

import math
import numbers

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


# ---------------------------------------------------------------- sampling and stopping settings, checked
# once for the API and the CLI.
# `name` is the keyword (top_k) or, from the command line, the flag (--top-k), which cannot be None.


def _or_none(name):
    return "" if name.startswith("--") else " or None"


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{_or_none(name)}, got {value!r}")
    return value


MIN_TEMPERATURE = 1e-6  # far below any useful one; from ~1e-37 on, logits / temperature overflows float32


def check_temperature(temp, name="temperature", allow_none=False):
    if temp is None and allow_none:
        return None
    if temp is not None and 0 < _number(name, temp) < MIN_TEMPERATURE:
        greedy = "--top-k 1" if name.startswith("--") else "top_k=1"
        raise ValueError(f"{name} {temp:g} is too small (logits / temperature would overflow): use at least "
                         f"{MIN_TEMPERATURE:g}, or {greedy} for greedy decoding")  # fmt: skip
    if temp is None or not _number(name, temp) > 0:
        hint = (
            ""
            if name.startswith("--")
            else " (use None for argmax)"
            if allow_none
            else " (top_k=1 is greedy)"
        )
        raise ValueError(f"{name} must be > 0, got {temp}{hint}")
    return temp


def check_top_k(top_k, name="top_k"):
    if top_k is not None and (int(_number(name, top_k)) != top_k or top_k < 1):
        raise ValueError(f"{name} must be an integer >= 1{_or_none(name)}, got {top_k}")
    return top_k if top_k is None else int(top_k)


def check_top_p(top_p, name="top_p"):
    if top_p is not None and not 0 < _number(name, top_p) <= 1:
        raise ValueError(f"{name} must be in (0, 1]{_or_none(name)}, got {top_p}")
    return top_p


def check_min_eos_p(min_eos_p, name="min_eos_p"):
    if min_eos_p is not None and not 0 <= _number(name, min_eos_p) <= 1:
        raise ValueError(f"{name} must be in [0, 1]{_or_none(name)}, got {min_eos_p}")
    return min_eos_p


def check_max_duration(seconds, name="max_duration_s"):
    if seconds is not None and not _number(name, seconds) > 0:
        raise ValueError(f"{name} must be > 0 seconds{_or_none(name)}, got {seconds}")
    return seconds


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's range starts there to wrap; a stated range reads better


def check_seed(seed, name="seed", n=1):
    """None, or an integer such that seed + n - 1 (the last sample's or segment's seed) is at most MAX_SEED."""
    if seed is None and not name.startswith("--"):
        return None
    if (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed <= MAX_SEED - (n - 1)
    ):
        extra = f" (item i of {n} uses seed + i)" if n > 1 else ""
        raise ValueError(
            f"{name} must be an integer from 0 to 2**63 - 1{extra}{_or_none(name)}, got {seed!r}"
        )
    return int(seed)


def check_sampling(temp, top_k=None, top_p=None, min_eos_p=None, allow_none_temp=False):
    """All of a stage's settings at once (raises ValueError naming the first bad one)."""
    check_temperature(temp, allow_none=allow_none_temp)
    check_top_k(top_k)
    check_top_p(top_p)
    check_min_eos_p(min_eos_p)
