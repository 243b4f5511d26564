"""The three token stages of Bark, following Suno's original algorithm step for step.

    semantic: text ids (256) + voice history (256) -> semantic tokens, until EOS (<= 768)
    coarse:   semantic tokens -> EnCodec codebooks 0-1, in windows of 60 flattened tokens
    fine:     codebooks 0-1 -> all 8 codebooks, in windows of 1024 frames advancing by 512

The token layouts and the index arithmetic are the original's; see docs and the
reference notes. Each function takes plain arrays and a model and returns numpy int64 arrays.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .sampling import sample

# token layout constants (Suno's generation.py)
SEMANTIC_VOCAB_SIZE = 10_000
SEMANTIC_PAD = 10_000          # pads the history and is the EOS logit
SEMANTIC_INFER = 129_599
SEMANTIC_RATE_HZ = 49.9
MAX_SEMANTIC_TOKENS = 768
CODEBOOK_SIZE = 1024
N_COARSE, N_FINE = 2, 8
COARSE_RATE_HZ = 75
COARSE_SEMANTIC_PAD = 12_048
COARSE_INFER = 12_050
COARSE_RATIO = COARSE_RATE_HZ / SEMANTIC_RATE_HZ * N_COARSE  # 3.006...: flattened coarse tokens per semantic token
MAX_COARSE_HISTORY = 630
COARSE_WINDOW = 60
FINE_WINDOW, FINE_STEP = 1024, 512
SAMPLES_PER_FRAME = 320


class _Progress:
    """A no-op stand-in for a tqdm bar."""
    def update(self, n=1):
        pass


# ---------------------------------------------------------------- semantic

def semantic_history(voice):
    """The last 256 semantic tokens of the voice, right-padded with SEMANTIC_PAD: (256,) int64."""
    hist = np.full(256, SEMANTIC_PAD, dtype=np.int64)
    if voice is not None:
        tail = voice["semantic_prompt"].astype(np.int64)[-256:]
        hist[:len(tail)] = tail
    return hist


@torch.no_grad()
def generate_semantic(model, text, history, temp=0.7, top_k=None, top_p=None, min_eos_p=0.2,
                      allow_early_stop=True, max_gen_duration_s=None, progress=None):
    """text, history: (B, 256) int64 arrays -> list of B 1-D int64 arrays of semantic tokens.

    Each sample stops at its own end of speech: when EOS is drawn, or when its probability
    reaches min_eos_p (EOS itself is never emitted).
    """
    progress = progress or _Progress()
    device = model.wte.weight.device
    text, history = (torch.as_tensor(np.asarray(a), device=device) for a in (text, history))
    B = text.shape[0]
    infer = torch.full((B, 1), SEMANTIC_INFER, device=device)
    model.setup_cache(B)
    out = torch.zeros(B, MAX_SEMANTIC_TOKENS, dtype=torch.long, device=device)
    lengths = torch.full((B,), MAX_SEMANTIC_TOKENS, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    duration = 0.0
    try:
        logits = model(embeds=model.merged_embedding(text, history, infer), last_only=True)  # positions 0..256
        for n in range(MAX_SEMANTIC_TOKENS):
            if n > 0:
                logits = model(out[:, n - 1:n], start=256 + n, last_only=True)
            relevant = logits[:, 0, :SEMANTIC_VOCAB_SIZE]
            if allow_early_stop:  # EOS competes as a 10001st candidate
                relevant = torch.cat([relevant, logits[:, 0, SEMANTIC_PAD:SEMANTIC_PAD + 1]], dim=-1)
            token, probs = sample(relevant, temp, top_k, top_p)
            if allow_early_stop:
                stop = token == SEMANTIC_PAD
                if min_eos_p is not None:
                    stop |= probs[:, -1] >= min_eos_p
                lengths = torch.where(stop & ~done, n, lengths)
                done |= stop
                if bool(done.all()):
                    break
            out[:, n] = token.masked_fill(done, 0)  # finished samples keep feeding a harmless token
            progress.update(1)
            duration += 1 / SEMANTIC_RATE_HZ  # accumulated like the original, so the cut-off step matches
            if max_gen_duration_s is not None and duration > max_gen_duration_s:
                lengths = torch.where(done, lengths, n + 1)
                break
    finally:
        model.clear_cache()
    return [out[b, :lengths[b]].cpu().numpy() for b in range(B)]


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
    max_sem = int(np.floor(MAX_COARSE_HISTORY / COARSE_RATIO))  # 209
    n_sem = int(min(max_sem, len(sem) - len(sem) % 2, int(np.floor(len(flat) / COARSE_RATIO))))
    n_coarse = int(round(n_sem * COARSE_RATIO))
    # [:-2] is the original's "bit of a hack for time alignment (sounds better)"
    return sem[-n_sem:], flat[-n_coarse:][:-2]


def coarse_steps(n_semantic):
    """Flattened coarse tokens to generate for n_semantic new semantic tokens (always even)."""
    return int(round(np.floor(n_semantic * COARSE_RATIO / 2) * 2))


def coarse_context(sem, coarse, n_step, base):
    """The window input: 256 semantic ids around the current time | COARSE_INFER | last 630 coarse ids."""
    max_sem = int(np.floor(MAX_COARSE_HISTORY / COARSE_RATIO))
    idx = base + int(round(n_step / COARSE_RATIO))
    window = sem[:, max(0, idx - max_sem):][:, :256]
    window = F.pad(window, (0, 256 - window.shape[1]), value=COARSE_SEMANTIC_PAD)
    infer = torch.full((sem.shape[0], 1), COARSE_INFER, device=sem.device, dtype=sem.dtype)
    return torch.cat([window, infer, coarse[:, -MAX_COARSE_HISTORY:]], dim=1)


@torch.no_grad()
def generate_coarse(model, semantic, voice=None, temp=0.7, top_k=None, top_p=None, progress=None):
    """semantic: 1-D token array -> (2, T) int64 codes, T = n_steps / 2.

    Every 60 steps the KV cache is dropped and the context rebuilt from a sliding semantic
    window and the last 630 coarse tokens (voice history included).
    """
    progress = progress or _Progress()
    device = model.wte.weight.device
    sem_hist, coarse_hist = coarse_history(voice)
    n_steps = coarse_steps(len(semantic))
    sem = torch.as_tensor(np.hstack([sem_hist, np.asarray(semantic, np.int64)]), device=device)[None]
    coarse = torch.as_tensor(coarse_hist, device=device)[None]
    generated = []
    model.setup_cache(1)
    try:
        for _ in range(math.ceil(n_steps / COARSE_WINDOW)):
            ctx = coarse_context(sem, coarse, len(generated), len(sem_hist))
            logits = model(ctx, last_only=True)
            pos = ctx.shape[1]
            for i in range(min(COARSE_WINDOW, n_steps - len(generated))):
                if i > 0:
                    logits = model(coarse[:, -1:], start=pos, last_only=True)
                    pos += 1
                # even steps sample codebook 0 ids, odd steps codebook 1 ids
                offset = SEMANTIC_VOCAB_SIZE + (len(generated) % 2) * CODEBOOK_SIZE
                token, _ = sample(logits[:, 0, offset:offset + CODEBOOK_SIZE], temp, top_k, top_p)
                coarse = torch.cat([coarse, (token + offset)[:, None]], dim=1)
                generated.append(token)
                progress.update(1)
    finally:
        model.clear_cache()
    flat = torch.stack(generated, dim=1)[0].cpu().numpy() if generated else np.zeros(0, np.int64)
    return flat.reshape(-1, 2).T.astype(np.int64)  # tokens were sampled within their codebook: 0..1023


# ---------------------------------------------------------------- fine

def fine_windows(n_frames, n_history):
    """(start, fill_start) of each 1024-frame window: windows advance by 512 and are clamped to the end."""
    total = max(n_history + n_frames, FINE_WINDOW)
    n_loops = max(0, math.ceil((n_frames - (FINE_WINDOW - n_history)) / FINE_STEP)) + 1
    return [(min(n * FINE_STEP, total - FINE_WINDOW), min(n_history + n * FINE_STEP, total - FINE_STEP))
            for n in range(n_loops)]


@torch.no_grad()
def generate_fine(model, coarse, voice=None, temp=0.5, progress=None):
    """coarse: (n_coarse, T) codes -> (8, T) int64 codes; temp None means argmax."""
    progress = progress or _Progress()
    device = model.wtes[0].weight.device
    coarse = np.asarray(coarse, np.int64)
    n_coarse, T = coarse.shape
    codes = np.vstack([coarse, np.full((N_FINE - n_coarse, T), CODEBOOK_SIZE, np.int64)])
    n_history = 0
    if voice is not None:
        hist = voice["fine_prompt"].astype(np.int64)[:, -FINE_STEP:]
        codes, n_history = np.hstack([hist, codes]), hist.shape[1]
    n_pad = max(0, FINE_WINDOW - codes.shape[1])  # short inputs are padded with 1024 in all 8 rows
    codes = np.pad(codes, ((0, 0), (0, n_pad)), constant_values=CODEBOOK_SIZE)
    buf = torch.as_tensor(codes.T.copy(), device=device)  # (L, 8)
    for start, fill in fine_windows(T, n_history):
        window = buf[start:start + FINE_WINDOW][None]  # a view: predictions land in buf directly
        rel = fill - start
        for k in range(n_coarse, N_FINE):  # each codebook sees the ones predicted just before it
            logits = model(k, window)[0, :, :CODEBOOK_SIZE]
            if temp is None:
                preds = logits[rel:].argmax(-1)
            else:
                probs = F.softmax(logits.float() / temp, dim=-1)
                preds = torch.multinomial(probs[rel:], num_samples=1)[:, 0]
            window[0, rel:, k] = preds
        progress.update(1)
    out = buf.T.cpu().numpy()[:, n_history:]
    return out[:, :T]
