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

import hashlib
import math
import os
import sys

import numpy as np
import torch

from .audio import HUBERT_RATE, MAX_PEAK, SILENCE_RMS, AudioError, load_clip, resampled_length
from .device import check_device
from .layout import COARSE_RATE_HZ, N_COARSE, SAMPLE_RATE, SEMANTIC_HISTORY, SEMANTIC_RATE_HZ
from .progress import progress_bar
from .voices import VoiceError, load_voice, save_voice, validate_voice
from .weights.checkpoint import ENCODER_FILE, HUBERT_FILE, QUANTIZER_FILE, load_encoder, load_hubert, load_quantizer
from .weights.hub import cache_root, cloning_weights, resolve


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
        raise AudioError("HuBERT made no usable features from this recording; the clip is too short or damaged")
    if not bool(codes.any()):  # what NaN latents give (code 0 is the nearest to NaN): a voice of nothing
        raise AudioError(
            "the codec encoded this recording as code 0 in every frame (its samples overflowed the encoder, or "
            "the encoder's weights are damaged); use a recording of speech with samples in [-1, 1]"
        )
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
        isinstance(x, torch.Tensor) and x.ndim == 1 and len(x) and x.is_floating_point() and bool(x.isfinite().all())
        for x in clip
    )
    if not ok or len(clip[1]) != resampled_length(len(clip[0]), SAMPLE_RATE, HUBERT_RATE):
        raise ValueError(
            "a tuple is the (24 kHz, 16 kHz) pair audio.load_clip returns: two 1-D finite float tensors of "
            "lengths L and ceil(L * 2 / 3); pass the recording or an array of samples with its sample_rate instead"
        )
    # what load_audio refuses in a recording, refused in a pair too (the encoder overflows; nothing to clone)
    peak, rms = float(clip[0].abs().max()), float(clip[0].double().pow(2).mean().sqrt())
    if peak > MAX_PEAK:
        raise AudioError(f"the pair's samples are far outside [-1, 1] (up to {peak:.3g}); scale them to [-1, 1]")
    if rms < SILENCE_RMS:
        raise AudioError(f"the pair is silent (RMS below {SILENCE_RMS:g}); record some speech")
    return clip


def kept_voice_file(wav24, weights):
    """Where cache=True keeps the voice of these samples made by these weights files: CACHE/voices/<sha256>.npz.

    The key is what the voice depends on: the content of the recording as cloning reads it (the 24 kHz
    samples of its used tail: a file's bytes beyond the last 30 s, or its container, change nothing) and each
    weights file (path, size, time: a reconversion is another key)."""
    key = hashlib.sha256(wav24.numpy().astype("<f4").tobytes())
    for file in weights:
        st = os.stat(file)
        key.update(f"\0{os.path.abspath(file)}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return os.path.join(cache_root(), "voices", key.hexdigest() + ".npz")


def _say(progress, message):
    if progress:
        print(f"cloning: {message}", file=sys.stderr, flush=True)


def clone_voice(model, audio, sample_rate=None, quantizer=None, hubert=None, device=None, progress=False, cache=False):
    """A recording of someone speaking -> a voice dict (semantic_prompt, coarse_prompt, fine_prompt).

    model: a converted folder, a Hub id or a snapshot folder, as for from_pretrained: only its EnCodec encoder
    is loaded. audio: a file soundfile reads (wav, flac, ogg, mp3; any channels and sample rate; only its last
    30 s are read), an array of samples with its sample_rate, or the (24 kHz, 16 kHz) pair audio.load_clip
    returns. 5-12 s of clean speech by one speaker, ending at the end of a sentence, work best. The first
    call downloads and converts HuBERT base and the community's semantic quantizer once
    (hub.cloning_weights); `quantizer` and `hubert` may name other files or folders (e.g. a quantizer
    trained for another language: the default one is English). cache=True: the voice is kept in nanobark's
    cache (kept_voice_file), and the same recording with the same weights is not cloned again.
    progress: a bar, and a line saying what is done, on stderr.
    """
    wav24, wav16 = check_clip(audio, sample_rate) if isinstance(audio, tuple) else load_clip(audio, sample_rate)
    folders = cloning_folders(model, quantizer, hubert)
    files = [os.path.join(folder, name) for folder, name in zip(folders, (ENCODER_FILE, HUBERT_FILE, QUANTIZER_FILE))]
    kept = kept_voice_file(wav24, files) if cache and all(map(os.path.isfile, files)) else None
    if kept is not None and os.path.isfile(kept):
        try:
            voice = load_voice(kept)
            _say(progress, f"this recording was cloned before; its voice is {kept}")
            return voice
        except VoiceError:  # damaged since: made again, and replaced
            pass
    later = f"; the voice is kept in {os.path.dirname(kept)} for the next run" if kept else ""
    _say(progress, f"making a voice of the recording (the EnCodec encoder, HuBERT and the quantizer){later}")
    bar = progress_bar("cloning", "steps") if progress else lambda done, total: None
    models = cloning_models(folders, device)
    bar(1, 2)
    voice = clone(wav24, wav16, *models)
    bar(2, 2)
    if kept is not None:
        try:
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            save_voice(kept, voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"])
        except OSError as e:  # a read-only or full cache: the voice is made, only not kept
            _say(progress, f"the voice could not be kept in the cache ({e}); the next run clones it again")
    return voice


def cloning_folders(model, quantizer=None, hubert=None):
    """(folder of `model`, HuBERT's, the quantizer's): a Hub id or snapshot is downloaded and converted once."""
    return (resolve(os.fspath(model))[0], *cloning_weights(quantizer, hubert))


def cloning_models(folders, device=None):
    """cloning_folders' answer -> (EnCodec encoder, HuBERT, quantizer) on `device`, as clone_voice loads them."""
    path, hubert_dir, quantizer_dir = folders
    device = check_device(device)
    return (
        load_encoder(path, device=device),
        load_hubert(hubert_dir, device=device),
        load_quantizer(quantizer_dir, device=device),
    )
