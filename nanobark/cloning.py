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

import numpy as np
import torch

from .layout import COARSE_RATE_HZ, N_COARSE, SEMANTIC_HISTORY, SEMANTIC_RATE_HZ
from .voices import validate_voice


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
def clone(wav24, wav16, encoder, hubert, quantizer):
    """24 kHz and 16 kHz mono float32 tensors of one recording -> its voice dict (the three int64 arrays)."""
    device = next(encoder.parameters()).device
    codes = encoder.encode(wav24[None].to(device))[0]  # (8, ceil(L24 / 320))
    features = hubert(wav16[None].to(next(hubert.parameters()).device))  # (1, F, 768)
    semantic = quantizer(features.to(next(quantizer.parameters()).device))[0]  # (F,) ids 0..9999
    if len(semantic) == 0 or math.isnan(float(features.abs().max())):
        raise ValueError(
            "HuBERT made no usable features from this recording; the clip is too short or damaged"
        )
    return prompt_from_tokens(semantic.cpu().numpy(), codes.cpu().numpy())
