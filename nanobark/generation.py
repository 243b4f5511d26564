"""The three token stages of Bark, following Suno's original algorithm step for step.

    semantic: text ids (256) + voice history (256) -> semantic tokens, until EOS (<= 768)
    coarse:   semantic tokens -> EnCodec codebooks 0-1, in windows of 60 flattened tokens
    fine:     codebooks 0-1 -> all 8 codebooks, in windows of 1024 frames advancing by 512

The token layout is in layout.py. Each function takes plain arrays and a model and returns numpy int64
arrays. Lines marked "original:" reproduce the arithmetic of Suno's bark/generation.py, which the parity
tests pin token for token; lines marked "speed-up:" are nanobark's own and compute the same thing faster.
Each stage reports progress(done, total) after every step, if given a callback.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .layout import (
    COARSE_INFER,
    COARSE_RATIO,
    COARSE_SEMANTIC_PAD,
    COARSE_SEMANTIC_WINDOW,
    COARSE_WINDOW,
    CODEBOOK_SIZE,
    FINE_HISTORY,
    FINE_STEP,
    FINE_WINDOW,
    MAX_COARSE_HISTORY,
    MAX_SEMANTIC_HISTORY,
    MAX_SEMANTIC_TOKENS,
    N_FINE,
    SEMANTIC_HISTORY,
    SEMANTIC_INFER,
    SEMANTIC_PAD,
    SEMANTIC_RATE_HZ,
    SEMANTIC_VOCAB_SIZE,
)
from .sampling import draw, sample


def _no_progress(done, total):
    pass


# ---------------------------------------------------------------- semantic


def semantic_history(voice):
    """The last 256 semantic tokens of the voice, right-padded with SEMANTIC_PAD: (256,) int64."""
    hist = np.full(SEMANTIC_HISTORY, SEMANTIC_PAD, dtype=np.int64)
    if voice is not None:
        tail = voice["semantic_prompt"].astype(np.int64)[-SEMANTIC_HISTORY:]
        hist[: len(tail)] = tail
    return hist


@torch.no_grad()
def generate_semantic(
    model,
    text,
    history,
    temp=0.7,
    top_k=None,
    top_p=None,
    min_eos_p=0.2,
    allow_early_stop=True,
    max_duration=None,
    generators=None,
    progress=None,
):
    """text, history: (B, 256) int64 arrays -> list of B 1-D int64 arrays of semantic tokens.

    Each sample stops at its own end of speech: when EOS is drawn, or when its probability
    reaches min_eos_p (EOS itself is never emitted). generators: see sampling.sample.
    """
    progress = progress or _no_progress
    device = model.wte.weight.device
    text, history = (torch.as_tensor(np.asarray(a), device=device) for a in (text, history))
    B, n_prompt = text.shape  # the infer token sits at position n_prompt, token n at n_prompt + 1 + n
    infer = torch.full((B, 1), SEMANTIC_INFER, device=device)
    model.setup_cache(B)
    out = torch.zeros(B, MAX_SEMANTIC_TOKENS, dtype=torch.long, device=device)
    lengths = torch.full((B,), MAX_SEMANTIC_TOKENS, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    duration = 0.0
    # the bar's total: where max_duration cuts (the loop's own float sum may cut one token later)
    cap = MAX_SEMANTIC_TOKENS if max_duration is None else int(max_duration * SEMANTIC_RATE_HZ) + 1
    logits = model(embeds=model.merged_embedding(text, history, infer), last_only=True)  # positions 0..256
    for n in range(MAX_SEMANTIC_TOKENS):
        if n > 0:
            logits = model.decode_step(out[:, n - 1 : n], n_prompt + n)
        relevant = logits[:, 0, :SEMANTIC_VOCAB_SIZE]
        if allow_early_stop:  # EOS competes as a 10001st candidate
            relevant = torch.cat([relevant, logits[:, 0, SEMANTIC_PAD : SEMANTIC_PAD + 1]], dim=-1)
        active = None if generators is None else (~done).tolist()
        token, probs = sample(relevant, temp, top_k, top_p, generators, active)
        if allow_early_stop:
            stop = token == SEMANTIC_PAD
            if min_eos_p is not None:
                stop |= probs[:, -1] >= min_eos_p
            lengths = torch.where(stop & ~done, n, lengths)  # a sample's first stop is its length
            done |= stop
            if bool(done.all()):
                break
        out[:, n] = token.masked_fill(done, 0)  # finished samples keep feeding a harmless token
        progress(n + 1, min(MAX_SEMANTIC_TOKENS, max(cap, n + 1)))
        # original: the duration is accumulated in floating point, so the cut-off step matches
        duration += 1 / SEMANTIC_RATE_HZ
        if max_duration is not None and duration > max_duration:
            lengths = torch.where(done, lengths, n + 1)
            break
    progress(int(lengths.max()), int(lengths.max()))  # the bar ends where the longest sample did
    return [out[b, : lengths[b]].cpu().numpy() for b in range(B)]


# ---------------------------------------------------------------- coarse


def flatten_codebooks(codes):
    """(2, T) codes -> (2T,) ids interleaved frame by frame, codebook 1 offset by 1024, all offset by 10000."""
    codes = codes.astype(np.int64).copy()
    codes[1] += CODEBOOK_SIZE
    return codes.ravel("F") + SEMANTIC_VOCAB_SIZE


def coarse_history(voice):
    """(semantic history, flattened coarse history) aligned in time, as the original trims them."""
    if voice is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sem = voice["semantic_prompt"].astype(np.int64)
    flat = flatten_codebooks(voice["coarse_prompt"])
    # original: an even number of semantic ids, and no more than the coarse history covers
    n_sem = int(min(MAX_SEMANTIC_HISTORY, len(sem) - len(sem) % 2, int(np.floor(len(flat) / COARSE_RATIO))))
    n_coarse = int(round(n_sem * COARSE_RATIO))
    # [:-2] is the original's "bit of a hack for time alignment (sounds better)"
    return sem[-n_sem:], flat[-n_coarse:][:-2]


def coarse_steps(n_semantic):
    """Flattened coarse tokens to generate for n_semantic new semantic tokens (always even)."""
    return int(round(np.floor(n_semantic * COARSE_RATIO / 2) * 2))


def coarse_context(sem, coarse, n_step, base):
    """The window input (1-D): 256 semantic ids around the current time | COARSE_INFER | last 630 coarse ids."""
    idx = base + int(round(n_step / COARSE_RATIO))  # original: the semantic id that step n_step speaks
    window = sem[max(0, idx - MAX_SEMANTIC_HISTORY) :][:COARSE_SEMANTIC_WINDOW]
    window = F.pad(window, (0, COARSE_SEMANTIC_WINDOW - len(window)), value=COARSE_SEMANTIC_PAD)
    infer = torch.tensor([COARSE_INFER], device=sem.device)
    return torch.cat([window, infer, coarse[-MAX_COARSE_HISTORY:]])


def shared_prefix(cached, ctx):
    """How many leading ids of ctx (B, L) equal those in the cache, keeping at least one id to run."""
    if cached is None:
        return 0
    n = min(cached.shape[1], ctx.shape[1] - 1)
    differs = (cached[:, :n] != ctx[:, :n]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else n


def left_pad(rows, value=0):
    """List of 1-D tensors -> (B, L) tensor right-aligned, and pad (B,) = slots of padding per row."""
    L = max(len(r) for r in rows)
    pad = torch.tensor([L - len(r) for r in rows], device=rows[0].device)
    return torch.stack([F.pad(r, (L - len(r), 0), value=value) for r in rows]), pad


@torch.no_grad()
def generate_coarse(model, semantics, voices, temp=0.7, top_k=None, top_p=None, generators=None, progress=None):
    """B semantic token arrays (one voice each, or None) -> B (2, T_b) int64 code arrays, T_b = n_steps_b / 2.

    Every 60 steps each context is rebuilt from a sliding semantic window and the last 630
    coarse tokens (voice history included), as in the original; the cache keeps only the
    keys and values of the context's unchanged prefix. Samples run in lockstep;
    contexts of different lengths are left-padded, and a sample past its own n_steps idles.
    """
    progress = progress or _no_progress
    device = model.wte.weight.device
    B = len(semantics)
    hists = [coarse_history(v) for v in voices]
    n_steps = [coarse_steps(len(s)) for s in semantics]
    N = max(n_steps)
    sems = [
        torch.as_tensor(np.hstack([h[0], np.asarray(s, np.int64)]), device=device) for h, s in zip(hists, semantics)
    ]
    coarse = [
        torch.cat([torch.as_tensor(h[1], device=device), torch.zeros(N, dtype=torch.long, device=device)])
        for h in hists
    ]  # history, then room for the generated tokens
    n_hist = [len(h[1]) for h in hists]
    model.setup_cache(B)
    cached = None  # the token ids whose keys and values are in the cache, (B, L)
    for start_step in range(0, N, COARSE_WINDOW):
        ctx, pad = left_pad(
            [
                coarse_context(sems[b], coarse[b][: n_hist[b] + start_step], start_step, len(hists[b][0]))
                for b in range(B)
            ]
        )
        pad = pad if bool(pad.any()) else None
        # speed-up: with causal attention, slots before the first changed id keep their keys and values.
        # Until the coarse history fills its 630 ids and the semantic window starts to slide, each new
        # window is the last one plus the tokens generated since, so its "prefill" is a single token.
        reused = shared_prefix(cached, ctx) if pad is None else 0
        fed, last = [], None  # the ids fed to the cache after the window's prefill; the last id sampled
        for n_step in range(start_step, min(start_step + COARSE_WINDOW, N)):
            # original: even steps sample codebook 0 ids, odd steps codebook 1 ids;
            # speed-up: only that codebook's 1024 logits are computed
            offset = SEMANTIC_VOCAB_SIZE + (n_step % 2) * CODEBOOK_SIZE
            codebook_ids = slice(offset, offset + CODEBOOK_SIZE)
            if n_step == start_step:
                logits = model(ctx[:, reused:], start=reused, pad=pad, last_only=True, logit_rows=codebook_ids)
            else:
                logits = model.decode_step(last, ctx.shape[1] + len(fed), pad, logit_rows=codebook_ids)
                fed.append(last)
            active = None if generators is None else [n_step < n for n in n_steps]
            token, _ = sample(logits[:, 0], temp, top_k, top_p, generators, active)
            last = (token + offset)[:, None]
            for b in range(B):
                coarse[b][n_hist[b] + n_step] = last[b, 0]
            progress(n_step + 1, N)
        cached = torch.cat([ctx, *fed], dim=1)
    # tokens were sampled within their codebook: subtract the offsets back to 0..1023 codes
    return [
        (
            (coarse[b][n_hist[b] : n_hist[b] + n_steps[b]] - SEMANTIC_VOCAB_SIZE).view(-1, 2).T
            - torch.tensor([[0], [CODEBOOK_SIZE]], device=device)
        )
        .cpu()
        .numpy()
        for b in range(B)
    ]


# ---------------------------------------------------------------- fine


def fine_windows(n_frames, n_history):
    """(start, fill_start) of each 1024-frame window: windows advance by 512 and are clamped to the end."""
    total = max(n_history + n_frames, FINE_WINDOW)
    n_loops = max(0, math.ceil((n_frames - (FINE_WINDOW - n_history)) / FINE_STEP)) + 1  # original
    return [
        (min(n * FINE_STEP, total - FINE_WINDOW), min(n_history + n * FINE_STEP, total - FINE_STEP))
        for n in range(n_loops)
    ]


def fine_input(coarse, voice):
    """(L, 8) buffer: fine history (<= 512 frames) | coarse codes with 1024 in rows 2..7 | 1024 padding to 1024."""
    n_coarse, T = coarse.shape
    codes = np.vstack([coarse, np.full((N_FINE - n_coarse, T), CODEBOOK_SIZE, np.int64)])
    n_history = 0
    if voice is not None:
        hist = voice["fine_prompt"].astype(np.int64)[:, -FINE_HISTORY:]
        codes, n_history = np.hstack([hist, codes]), hist.shape[1]
    n_pad = max(0, FINE_WINDOW - codes.shape[1])  # short inputs are padded with 1024 in all 8 rows
    return np.pad(codes, ((0, 0), (0, n_pad)), constant_values=CODEBOOK_SIZE).T.copy(), n_history


@torch.no_grad()
def generate_fine(model, coarses, voices, temp=0.5, generators=None, progress=None):
    """B (n_coarse, T_b) code arrays -> B (8, T_b) int64 code arrays; temp None means argmax.

    Windows are always 1024 frames, so the b-th sample's n-th window can share a forward
    pass with the other samples' n-th windows without any padding.
    """
    progress = progress or _no_progress
    device = model.wtes[0].weight.device
    coarses = [np.asarray(c, np.int64) for c in coarses]
    n_coarse = coarses[0].shape[0]
    inputs = [fine_input(c, v) for c, v in zip(coarses, voices)]
    bufs = [torch.as_tensor(buf, device=device) for buf, _ in inputs]  # (L_b, 8) each
    plans = [fine_windows(c.shape[1], n_hist) for c, (_, n_hist) in zip(coarses, inputs)]
    n_windows = max(len(p) for p in plans)
    for n in range(n_windows):
        live = [b for b in range(len(bufs)) if n < len(plans[b])]  # the samples that have an n-th window
        starts = {b: plans[b][n][0] for b in live}
        window = torch.stack([bufs[b][starts[b] : starts[b] + FINE_WINDOW] for b in live])  # (B', 1024, 8)
        for k in range(n_coarse, N_FINE):  # each codebook sees the ones predicted just before it
            logits = model(k, window)[:, :, :CODEBOOK_SIZE]
            for i, b in enumerate(live):
                rel = plans[b][n][1] - starts[b]  # the window's frames to fill start here
                if temp is None:
                    preds = logits[i, rel:].argmax(-1)
                else:  # original: softmax over the whole window, then one draw per frame to fill
                    probs = F.softmax(logits[i].float() / temp, dim=-1)[rel:]
                    preds = draw(probs, None if generators is None else generators[b])
                window[i, rel:, k] = preds
        for i, b in enumerate(live):
            bufs[b][starts[b] : starts[b] + FINE_WINDOW] = window[i]
        progress(n + 1, n_windows)
    return [buf.T.cpu().numpy()[:, n_hist : n_hist + c.shape[1]] for buf, c, (_, n_hist) in zip(bufs, coarses, inputs)]
