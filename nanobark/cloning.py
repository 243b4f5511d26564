"""Voice cloning: a recording -> a Bark voice prompt, the other half of the Bark story (audio to tokens).

    recording -> 24 kHz mono ---------------- EnCodec encoder --> codes (8, T)   75 frames/s: fine_prompt
                     \\                                             codes[:2]     coarse_prompt
                      -> 16 kHz -> HuBERT (layer 9) -> (F, 768) -> quantizer --> ids (F,)  ~50/s: semantic_prompt

Suno never published how Bark's semantic tokens were made; the community's answer is HuBERT base features
read by a small LSTM ("quantizer") trained on Bark's own output to predict Bark's semantic ids. The codes
are exact: EnCodec is the codec Bark decodes with. Both streams end where the recording ends, so the
prompt keeps the same last stretch of audio from each: what Bark reads (the text stage's 256 semantic
tokens of history) and the codec frames of that same span, so that T / S stays Bark's 1.5.
"""

import math
import os

import numpy as np
import torch

from .audio import HUBERT_RATE, load_clip, resampled_length
from .device import check_device
from .layout import COARSE_RATE_HZ, N_COARSE, SAMPLE_RATE, SEMANTIC_HISTORY, SEMANTIC_RATE_HZ
from .progress import progress_bar
from .voices import validate_voice
from .weights.checkpoint import load_encoder, load_hubert, load_quantizer
from .weights.hub import cloning_weights, resolve


def prompt_from_tokens(semantic, codes):
    """semantic ids (S,) and codes (8, T) of one recording -> the voice dict, trimmed to what Bark reads.

    The last min(S, 256) semantic ids are kept, with the codec frames of the same span (rounded to the
    nearest frame): T' = round(S' * 75 / 49.9), at most T. The coarse stage asserts round(T'/S', 1) == 1.5."""
    keep = min(len(semantic), SEMANTIC_HISTORY)
    frames = min(codes.shape[1], round(keep * COARSE_RATE_HZ / SEMANTIC_RATE_HZ))
    semantic, codes = (
        np.asarray(semantic[-keep:], np.int64),
        np.asarray(codes[:, codes.shape[1] - frames :], np.int64),
    )
    voice = {"semantic_prompt": semantic, "coarse_prompt": codes[:N_COARSE], "fine_prompt": codes}
    return validate_voice(voice, "cloned voice")


@torch.inference_mode()
def tokens(wav24, wav16, encoder, hubert, quantizer):
    """24 kHz and 16 kHz mono float32 tensors of one recording -> all of its semantic ids (S,) and codes (8, T),
    int64 numpy: what a voice keeps the end of, and what fine-tuning trains on (nanobark prepare)."""
    device = next(encoder.parameters()).device
    codes = encoder.encode(wav24[None].to(device))[0]  # (8, ceil(L24 / 320))
    features = hubert(wav16[None].to(next(hubert.parameters()).device))  # (1, F, 768)
    semantic = quantizer(features.to(next(quantizer.parameters()).device))[0]  # (F,) ids 0..9999
    if len(semantic) == 0 or math.isnan(float(features.abs().max())):
        raise ValueError("HuBERT made no usable features from this recording; the clip is too short or damaged")
    return semantic.cpu().numpy().astype(np.int64), codes.cpu().numpy().astype(np.int64)


def clone(wav24, wav16, encoder, hubert, quantizer):
    """24 kHz and 16 kHz mono float32 tensors of one recording -> its voice dict (the three int64 arrays)."""
    return prompt_from_tokens(*tokens(wav24, wav16, encoder, hubert, quantizer))


def check_clip(clip, sample_rate=None):
    """The (24 kHz (L24,), 16 kHz (L16,)) pair load_clip returns, checked: a pair is never resampled, so a
    sample_rate with it, or two channels of one recording passed as a pair, is refused here."""
    if sample_rate is not None:
        raise ValueError(
            f"sample_rate={sample_rate} came with a tuple, the (24 kHz, 16 kHz) pair load_clip returns, which is "
            "never resampled; pass sample_rate only with one array of samples"
        )
    ok = len(clip) == 2 and all(
        isinstance(x, torch.Tensor) and x.ndim == 1 and x.is_floating_point() and bool(x.isfinite().all()) for x in clip
    )
    if not ok or len(clip[1]) != resampled_length(len(clip[0]), SAMPLE_RATE, HUBERT_RATE):
        raise ValueError(
            "a tuple is the (24 kHz, 16 kHz) pair audio.load_clip returns: two 1-D finite float tensors of "
            "lengths L and ceil(L * 2 / 3); pass the recording or an array of samples with its sample_rate instead"
        )
    return clip


def clone_voice(model, audio, sample_rate=None, quantizer=None, hubert=None, device=None, progress=False):
    """A recording of someone speaking -> a voice dict (semantic_prompt, coarse_prompt, fine_prompt).

    model: a converted folder, a Hub id or a snapshot folder, as for from_pretrained: only its EnCodec encoder
    is loaded. audio: a file soundfile reads (wav, flac, ogg; any channels and sample rate; only its last
    30 s are read), an array of samples with its sample_rate, or the (24 kHz, 16 kHz) pair audio.load_clip
    returns. 5-12 s of clean speech by one speaker, ending at the end of a sentence, work best. The first
    call downloads and converts HuBERT base and the community's semantic quantizer once
    (hub.cloning_weights); `quantizer` and `hubert` may name other files or folders (e.g. a quantizer
    trained for another language: the default one is English).
    """
    wav24, wav16 = check_clip(audio, sample_rate) if isinstance(audio, tuple) else load_clip(audio, sample_rate)
    bar = progress_bar("cloning", "steps") if progress else lambda done, total: None
    models = cloning_models(model, quantizer, hubert, device)
    bar(1, 2)
    voice = clone(wav24, wav16, *models)
    bar(2, 2)
    return voice


def cloning_models(model, quantizer=None, hubert=None, device=None):
    """-> (EnCodec encoder of `model`, HuBERT, quantizer) on `device`, as clone_voice loads them (arguments alike)."""
    path = resolve(os.fspath(model))[0]  # a converted folder as it is; a Hub id or snapshot: converted once
    hubert_dir, quantizer_dir = cloning_weights(quantizer, hubert)  # downloaded and converted once
    device = check_device(device)
    return (
        load_encoder(path, device=device),
        load_hubert(hubert_dir, device=device),
        load_quantizer(quantizer_dir, device=device),
    )
