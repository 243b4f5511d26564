"""A clip -> the training examples of one stage, laid out by the code that lays out generation's contexts.

Training must show each model the sequences generation shows it, or it learns a layout it is never asked to
continue (the public recipe fed the semantic model text and history as 513 separate positions where
generation sums them into 256; its pretrained validation loss was 10.9). So nothing here builds a context
of its own: text_prompt, semantic_history, merged_embedding (loss.py), coarse_history, flatten_codebooks,
coarse_steps, coarse_context, fine_input and fine_windows are generation's, called with the clip's true
tokens where generation would have fed the ones it sampled (teacher forcing). tests/test_train.py checks
that the logits of every target equal the ones generation computes at that step.

The voice. Generation reads a voice prompt (semantic history, coarse history, fine history) or none. With
probability voice_prob an example gets, as its voice, the previous clip of its split (manifest order: a
speaker's recordings one after another), made into a prompt exactly as voice cloning makes one from a
recording (cloning.prompt_from_tokens); otherwise none. So the model learns both uses: speaking the trained
voice unprompted, and continuing a cloned prompt. A clip is never its own voice (its targets would leak).

Every array is int64; targets hold IGNORE wherever generation reads no logit (the prompt, padding).
"""

import numpy as np
import torch

from ..cloning import prompt_from_tokens
from ..generation import (
    coarse_context,
    coarse_history,
    coarse_steps,
    fine_input,
    fine_windows,
    flatten_codebooks,
    semantic_history,
)
from ..layout import (
    COARSE_WINDOW,
    CODEBOOK_SIZE,
    FINE_WINDOW,
    MAX_SEMANTIC_TOKENS,
    N_COARSE,
    N_FINE,
    SEMANTIC_INFER,
    SEMANTIC_PAD,
)
from ..tokenizer import text_prompt

IGNORE = -100  # cross_entropy's ignore_index: no loss at this position
STAGES = ("semantic", "coarse", "fine")


# ---------------------------------------------------------------- semantic


def semantic_example(clip, voice):
    """text (256,), history (256,) summed into positions 0..255; ids (L,) = INFER, then the targets but the last.

    Targets are the clip's semantic tokens then EOS (SEMANTIC_PAD, the logit generation stops on), at most
    768 in all as generation makes at most 768. The logit at position 256 + j predicts target j, as
    generate_semantic's step j reads it."""
    targets = np.append(clip.semantic, SEMANTIC_PAD)[:MAX_SEMANTIC_TOKENS]
    ids = np.concatenate([[SEMANTIC_INFER], targets[:-1]])
    return dict(text=text_prompt(clip.text), history=semantic_history(voice), ids=ids, targets=targets)


# ---------------------------------------------------------------- coarse


def coarse_windows(clip):
    """How many 60-step windows generation takes to speak this clip's coarse tokens."""
    return -(-coarse_length(clip) // COARSE_WINDOW)


def coarse_length(clip):
    """Flattened coarse tokens to learn: what generation makes for the clip's semantic tokens (coarse_steps),
    no more than the clip's codes hold."""
    return min(coarse_steps(len(clip.semantic)), N_COARSE * clip.codes.shape[1])


def coarse_example(clip, voice, window):
    """ids (L,): the window's context (coarse_context: 256 semantic ids around the current time | INFER | the
    last 630 coarse ids), then the window's tokens but the last; targets (L,): IGNORE over the context but its
    last position, then the window's flattened tokens (offsets included), as generate_coarse samples them."""
    sem_hist, coarse_hist = coarse_history(voice)
    n = coarse_length(clip)
    sem = torch.as_tensor(np.hstack([sem_hist, clip.semantic]))
    coarse = torch.as_tensor(np.hstack([coarse_hist, flatten_codebooks(clip.codes[:N_COARSE])[:n]]))
    start, h = window * COARSE_WINDOW, len(coarse_hist)
    end = min(start + COARSE_WINDOW, n)
    ctx = coarse_context(sem, coarse[: h + start], start, len(sem_hist)).numpy()
    ids = np.concatenate([ctx, coarse[h + start : h + end - 1].numpy()])
    targets = np.full(len(ids), IGNORE, np.int64)
    targets[len(ctx) - 1 :] = coarse[h + start : h + end].numpy()
    return dict(ids=ids, targets=targets)


# ---------------------------------------------------------------- fine


def fine_history(voice):
    return fine_input(np.zeros((N_COARSE, 1), np.int64), voice)[1]


def fine_example(clip, voice, window):
    """ids (6, 1024, 8): the window as generate_fine holds it when it predicts codebook k = 2..7; targets
    (6, 1024): codebook k's true codes at the frames that window fills, IGNORE elsewhere.

    Generation starts from fine_input(coarse codes): codebooks 2..7 hold the filler 1024 past the voice's
    history. Each window fills its frames one codebook at a time, each codebook seeing those before it (the
    model sums codebooks 0..k); earlier windows have filled their frames in every codebook. Here the fills
    are the true codes. The one difference: frames past the clip's end (a clip shorter than a window is
    padded with 1024) keep the filler, where generation writes its own guesses there, which are unknown
    before the model makes them; no loss is taken at them."""
    codes = clip.codes
    true, n_hist = fine_input(codes, voice)  # (L, 8): history | all 8 codebooks | 1024 padding
    buf, _ = fine_input(codes[:N_COARSE], voice)  # what generation starts from
    plan = fine_windows(codes.shape[1], n_hist)
    for start, fill in plan[:window]:  # the windows before this one filled their frames
        buf[fill : start + FINE_WINDOW, N_COARSE:] = true[fill : start + FINE_WINDOW, N_COARSE:]
    start, fill = plan[window]
    rel = fill - start  # the window's first frame to fill
    ids = np.repeat(buf[None, start : start + FINE_WINDOW], N_FINE - N_COARSE, axis=0)
    targets = np.full((N_FINE - N_COARSE, FINE_WINDOW), IGNORE, np.int64)
    for j, k in enumerate(range(N_COARSE, N_FINE)):
        ids[j, rel:, N_COARSE:k] = true[fill : start + FINE_WINDOW, N_COARSE:k]  # the codebooks filled before k
        targets[j, rel:] = true[fill : start + FINE_WINDOW, k]
    targets[targets == CODEBOOK_SIZE] = IGNORE  # padding past the clip's end
    return dict(ids=ids, targets=targets)


# ---------------------------------------------------------------- batches


def collate(examples):
    """Examples -> a batch of tensors: the same keys, rows right-padded (ids with 0, targets with IGNORE).

    Right padding is never seen by a real position: the GPTs are causal, and fine windows are all 1024."""
    out = {}
    for key in examples[0]:
        rows = [e[key] for e in examples]
        width = max(len(r) for r in rows)
        fill = IGNORE if key == "targets" else 0
        padded = [np.pad(r, [(0, width - len(r))] + [(0, 0)] * (r.ndim - 1), constant_values=fill) for r in rows]
        out[key] = torch.as_tensor(np.stack(padded))
    return out


class Examples:
    """A stage's examples from a list of clips, drawn at random but reproducibly.

    Batch `index` of step `step` is drawn from its own generator seeded (seed, step, index): it depends on
    nothing else, so a resumed run draws what the stopped one would have, and the global batch of a step is
    the same whatever the number of processes (process r's micro-batch m is index r * accumulation + m)."""

    def __init__(self, stage, clips, voice_prob=0.5, seed=0):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        self.stage, self.clips, self.voice_prob, self.seed = stage, clips, voice_prob, seed

    def voice(self, i, rng):
        """The previous clip as a cloned voice prompt, with probability voice_prob; else None."""
        if len(self.clips) < 2 or rng.random() >= self.voice_prob:
            return None
        prev = self.clips[i - 1]
        return prompt_from_tokens(prev.semantic, prev.codes)

    def draw(self, rng):
        i = int(rng.integers(len(self.clips)))
        clip, voice = self.clips[i], self.voice(i, rng)
        if self.stage == "semantic":
            return semantic_example(clip, voice)
        if self.stage == "coarse":
            return coarse_example(clip, voice, int(rng.integers(coarse_windows(clip))))
        n_windows = len(fine_windows(clip.codes.shape[1], fine_history(voice)))
        return fine_example(clip, voice, int(rng.integers(n_windows)))

    def batch(self, step, index, size):
        rng = np.random.default_rng([self.seed, step, index])
        return collate([self.draw(rng) for _ in range(size)])
