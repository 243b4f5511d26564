"""Bark's token layout: every id, offset, rate and window size, in one place, and the one check of token arrays.

The values are Suno's (bark/generation.py); the stages, the tokenizer, voices, long form and the scripts read
them from here. (The model shapes, vocabulary sizes included, are in config.py: they belong to a checkpoint.)

    text:     BERT ids + TEXT_OFFSET, cut to TEXT_LENGTH, padded with TEXT_PAD          (256,)
    semantic: ids 0..9999 at SEMANTIC_RATE_HZ; SEMANTIC_PAD pads the voice history and is the EOS logit
    coarse:   codebooks 0-1 of EnCodec at COARSE_RATE_HZ, flattened frame by frame into one stream:
              codebook k's code c is the id SEMANTIC_VOCAB_SIZE + k * CODEBOOK_SIZE + c
    fine:     all N_FINE codebooks, codes 0..1023, CODEBOOK_SIZE as the "not yet predicted" filler
    audio:    SAMPLES_PER_FRAME samples per codec frame at SAMPLE_RATE
"""

import numpy as np

# ---- text -> semantic
TEXT_LENGTH = 256  # text tokens one generation reads; more are dropped (with a warning)
TEXT_OFFSET = 10_048  # BERT ids are shifted past the semantic model's output vocabulary
TEXT_PAD = 129_595
SEMANTIC_HISTORY = 256  # voice semantic tokens summed into the text block, position by position
SEMANTIC_VOCAB_SIZE = 10_000
SEMANTIC_PAD = 10_000  # pads the history and is the EOS logit
SEMANTIC_INFER = 129_599  # follows the prompt: "now generate semantic tokens"
SEMANTIC_RATE_HZ = 49.9
MAX_SEMANTIC_TOKENS = 768

# ---- semantic -> coarse
CODEBOOK_SIZE = 1024
N_COARSE, N_FINE = 2, 8
COARSE_RATE_HZ = 75
COARSE_RATIO = COARSE_RATE_HZ / SEMANTIC_RATE_HZ * N_COARSE  # 3.006...: flattened coarse ids per semantic id
COARSE_SEMANTIC_WINDOW = 256  # semantic ids in each window's context
COARSE_SEMANTIC_PAD = 12_048
COARSE_INFER = 12_050
MAX_COARSE_HISTORY = 630  # flattened coarse ids in each window's context
COARSE_WINDOW = 60  # ids generated per window before the context is rebuilt
# 209 semantic ids behind the current one
MAX_SEMANTIC_HISTORY = int(np.floor(MAX_COARSE_HISTORY / COARSE_RATIO))

# ---- coarse -> fine -> audio
FINE_WINDOW, FINE_STEP = 1024, 512  # the fine model sees 1024 frames at a time, advancing by 512
FINE_HISTORY = 512  # voice frames kept in front of the codes
SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 320  # the codec's hop: its upsampling ratios 8 x 5 x 4 x 2


def check_ids(a, what, high, rows=None, error=ValueError):
    """A non-empty integer array with values in 0..high-1 -> an int64 copy; otherwise one `error` naming it.

    rows: None for a 1-D array (S,); an int n for an (n, T) array; a (lo, hi) pair for (lo..hi, T).
    """
    try:
        a = np.asarray(a)
    except ValueError as e:  # ragged nested lists
        raise error(f"{what} is not a rectangular array ({e})") from None
    if isinstance(rows, int):
        rows = (rows, rows)
    if rows is None:
        shape = "(S,)"
    else:
        shape = f"({rows[0]}, T)" if rows[0] == rows[1] else f"({rows[0]}..{rows[1]}, T)"
    if a.size == 0:
        raise error(f"{what} is empty, expected {shape} with at least one step")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.isnan(a).any():
            raise error(f"{what} holds NaN; it should hold integer token ids")
        raise error(
            f"{what} has dtype {a.dtype}; it should hold integer token ids "
            "(use .astype(np.int64) if they are whole numbers)"
        )
    if a.ndim != (1 if rows is None else 2) or (rows is not None and not rows[0] <= a.shape[0] <= rows[1]):
        raise error(f"{what} has shape {a.shape}, expected {shape}")
    lo, top = int(a.min()), int(a.max())
    if lo < 0 or top >= high:
        raise error(f"{what} values must lie in 0..{high - 1}, found {lo}..{top}")
    return np.array(a, dtype=np.int64)
