"""Audio in, for voice cloning: a recording -> mono float32 at 24 kHz (EnCodec) and 16 kHz (HuBERT).

    file or array ─► the tail that is used ─► mono (mean of channels) ─► 24 kHz ─► 16 kHz

The 16 kHz signal is made from the 24 kHz one, not from the file, because the semantic quantizer was trained
on Bark's own 24 kHz output resampled to 16 kHz. The resampler is torchaudio's `resample` with its defaults
(a Hann-windowed sinc, 6 zero crossings, cut-off at 0.99 of the lower Nyquist), rewritten in a few lines of
torch so nanobark needs no torchaudio; the tests hold it to torchaudio's own code.
"""

import functools
import math
import numbers
import os
import warnings

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from .layout import SAMPLE_RATE

HUBERT_RATE = 16_000  # HuBERT base was trained on 16 kHz speech
MAX_SECONDS = 30.0  # the tail of a longer recording that is read; Bark only uses its last ~5-7 s anyway
MIN_SECONDS = 1.0  # below ~0.83 s the coarse stage's 1.5-frames-per-token assert fails
ADVISED_SECONDS = (3.0, 30.0)  # warn outside this; the community advises 5-12 s of clean speech
MAX_PHASES = 10**6  # orig * new after dividing by their gcd: 44.1 kHz -> 24 kHz is 147 * 80, 11.025 kHz 147 * 320
# what a recording may cost is counted in samples, not seconds: at 240 MHz or with 1024 channels, 30 s is GBs
MAX_RATE = 384_000  # the highest rate audio interfaces record at
MAX_SAMPLES = 92_160_000  # frames x channels read: 30 s of 64 channels at 48 kHz (8 at 384 kHz), 370 MB of float32
MAX_PEAK = 16.0  # +24 dB over full scale; far beyond it the encoder's latents overflow and every code is 0
SILENCE_RMS = 1e-4  # -80 dBFS, about 3 steps of 16-bit audio: below it there is nothing to clone
ZEROS, ROLLOFF = 6, 0.99  # torchaudio's defaults: lowpass_filter_width and rolloff


class AudioError(ValueError):
    """A recording that cannot be used for cloning."""


class AudioFileNotFoundError(FileNotFoundError):
    """No audio file at the path given."""


# ---- resampling --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def sinc_kernel(orig, new):
    """The polyphase low-pass filters for rates divided by their gcd -> ((new, 1, 2 * width + orig), width).

    Output sample j lies at time j / new, between input samples; phase j (0..new-1) weighs the inputs
    i = -width .. width + orig - 1 of its frame, at times i / orig. Frame m's outputs reuse the same weights
    on the input shifted by m * orig, which makes the whole thing one strided conv1d.
    """
    cutoff = min(orig, new) * ROLLOFF  # the low-pass edge, just under the lower of the two Nyquist rates x2
    width = math.ceil(ZEROS * orig / cutoff)  # input samples on each side that hold ZEROS zero crossings
    t = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # input times (2 * width + orig,)
    t = t - torch.arange(new, dtype=torch.float64)[:, None] / new  # minus each output's time: (new, taps)
    t = (t * cutoff).clamp(-ZEROS, ZEROS)  # in zero crossings of the filter; 0 weight beyond ZEROS
    window = torch.cos(t * math.pi / ZEROS / 2) ** 2  # Hann, reaching zero at +-ZEROS
    kernel = torch.special.sinc(t) * window * (cutoff / orig)  # the gain keeps a constant signal constant
    return kernel[:, None], width


def _reduced(orig_rate, new_rate):
    for rate in (orig_rate, new_rate):
        real = isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(rate)
        if not (real and rate > 0 and rate == int(rate)):
            raise ValueError(f"sample rates must be positive whole numbers, got {orig_rate} and {new_rate}")
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    if orig * new > MAX_PHASES:  # the kernel is (new, 2 * width + orig): 44101 -> 24000 Hz would be 8 GB
        raise AudioError(
            f"cannot resample {orig_rate} Hz to {new_rate} Hz: the rates share no large factor, so the filter "
            "would take gigabytes; convert the recording to a common rate first (e.g. ffmpeg -i IN -ar 48000 OUT)"
        )
    return orig, new


def resampled_length(length, orig_rate, new_rate):
    """ceil(length * new_rate / orig_rate), in integers: the output length of `resample`."""
    orig, new = _reduced(orig_rate, new_rate)
    return -(-length * new // orig)


def resample(x, orig_rate, new_rate):
    """Band-limited resampling, as torchaudio.functional.resample with its defaults.

    x: (..., L) floating point -> (..., ceil(L * new_rate / orig_rate)) in x's dtype. Same rates: x itself.
    """
    orig, new = _reduced(orig_rate, new_rate)
    if orig == new:
        return x
    if not torch.is_floating_point(x):
        raise TypeError(f"resample takes a floating point tensor, got {x.dtype}")
    kernel, width = sinc_kernel(orig, new)
    *batch, length = x.shape
    x = x.reshape(math.prod(batch), 1, length)  # (N, 1, L)
    x = F.pad(x, (width, width + orig))  # zeros around it: (N, 1, width + L + width + orig)
    y = F.conv1d(x, kernel.to(x), stride=orig)  # (N, new, frames): phase j of frame m is output m * new + j
    y = y.transpose(1, 2).reshape(*batch, y.shape[2] * new)  # frames in order: (..., frames * new)
    return y[..., : resampled_length(length, orig, new)]


def tail_start(length, keep, orig_rate, new_rate):
    """Where to cut an input of `length` samples so that resampling only its tail still gives the last `keep`
    output samples of resampling the whole, exactly -> (start, drop).

    resample(x[start:])[drop:] == resample(x)[-keep:]. The cut is on a frame boundary (a multiple of the
    reduced input rate, so outputs keep their phase) at least a filter's width before the first kept output.
    """
    total = resampled_length(length, orig_rate, new_rate)
    first = max(0, total - keep)  # the first output kept
    orig, new = _reduced(orig_rate, new_rate)
    if orig == new:
        return first, 0
    _, width = sinc_kernel(orig, new)
    frame = max(0, first // new - math.ceil(width / orig))  # its filter reaches back over `width` inputs
    return frame * orig, first - frame * new


# ---- loading -----------------------------------------------------------------------------------------


def _read_file(path, keep, rate, longest=None):
    """The used part of a sound file -> ((frames, channels) float32 from `start` on, rate, seconds, start).
    longest: seconds a recording may last (read from its header, so a long file is refused unread)."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AudioFileNotFoundError(f"{name}: no such audio file")
    if os.path.isdir(name):
        raise AudioError(f"{name} is a folder; pass an audio file (wav, flac, ogg, mp3)")
    if os.path.getsize(name) == 0:
        raise AudioError(f"{name} is empty (0 bytes); record or export the clip again")
    try:
        with sf.SoundFile(name) as f:
            if f.frames <= 0 or f.channels <= 0:
                raise AudioError(
                    f"{name} holds no audio ({f.frames} frames, {f.channels} channels); record or export the clip again"
                )
            if f.samplerate > MAX_RATE:
                raise AudioError(
                    f"{name} has a sample rate of {f.samplerate:,} Hz, over {MAX_RATE:,}; convert it to a common "
                    f"rate first (ffmpeg -i '{name}' -ar 48000 clip.wav)"
                )
            _check_length(name, f.frames / f.samplerate, longest)
            start = 0 if keep is None else tail_start(f.frames, keep, f.samplerate, rate)[0]
            if (f.frames - start) * f.channels > MAX_SAMPLES:  # checked from the header, before reading
                raise AudioError(
                    f"{name}: the part used holds {f.frames - start:,} frames of {f.channels} channels, over "
                    f"{MAX_SAMPLES:,} samples; use a mono or stereo clip of at most 30 s"
                )
            if start:  # past the part that is not used: a long recording is never read whole
                f.seek(start)
            data = f.read(dtype="float32", always_2d=True)  # int16 / int24 / int32 PCM scaled to [-1, 1)
            return data, f.samplerate, f.frames / f.samplerate, start
    except sf.SoundFileError as e:  # LibsndfileError: not audio, or a format libsndfile cannot decode
        raise AudioError(
            f"{name}: not an audio file soundfile can read ({e}); convert it to wav or flac, e.g. "
            f"ffmpeg -i '{name}' clip.wav"
        ) from None


def _as_samples(audio, name):
    """Samples (L,), (C, L) or (L, C) -> (frames, channels) float32 numpy; the shorter axis is channels."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = audio.float() if audio.is_floating_point() else audio
        audio = audio.numpy()
    elif not isinstance(audio, np.ndarray):
        raise AudioError(
            f"{name} is a {type(audio).__name__}; pass a file path, or a numpy array or torch tensor of "
            "samples with its sample_rate"
        )
    if audio.dtype == np.int16 or audio.dtype == np.int32:  # PCM, as soundfile and scipy's wavfile give it
        audio = audio / np.float32(2 ** (8 * audio.dtype.itemsize - 1))
    elif audio.dtype.kind != "f":
        raise AudioError(f"{name} has dtype {audio.dtype}; pass float samples in [-1, 1] (or int16 / int32 PCM)")
    if audio.ndim == 1:
        audio = audio[:, None]
    elif audio.ndim != 2:
        raise AudioError(f"{name} has shape {audio.shape}; pass (samples,) or (channels, samples)")
    elif audio.shape[0] < audio.shape[1]:  # (channels, samples) as torch has it; soundfile's is the other
        audio = audio.T
    if audio.size == 0:
        raise AudioError(f"{name} is empty (shape {audio.shape}); pass at least {MIN_SECONDS:g} s of speech")
    return audio.astype(np.float32, copy=False)


def _check_length(name, seconds, longest):
    if longest is not None and seconds > longest:
        raise AudioError(f"{name} is {seconds:.2f} s long, over the {longest:g} s allowed; cut it into shorter clips")


def load_audio(audio, sample_rate=None, rate=SAMPLE_RATE, max_seconds=MAX_SECONDS, whole=False):
    """A recording -> (L,) float32 mono at `rate`: its last `max_seconds` (None: all of it), checked.

    audio: a path to any file soundfile reads (wav, flac, ogg, mp3; any channels and sample rate), or a numpy
    array / torch tensor of samples (L,), (C, L) or (L, C) whose `sample_rate` is given. Channels are
    averaged, then resampled. A file longer than max_seconds is read from where its used tail starts.
    Raises AudioError (a ValueError) for what cannot be cloned: non-audio, empty, shorter than MIN_SECONDS,
    silent, NaN, infinite or far-out-of-range samples; warns for clips far outside the advised length.
    whole=True (a clip to train on, not a voice): all of it or nothing: longer than max_seconds is an
    AudioError, not cut to its tail, and no advice on the length (that is cloning's).
    """
    if max_seconds is not None and not max_seconds >= MIN_SECONDS:
        raise ValueError(f"max_seconds must be at least {MIN_SECONDS:g} (or None for all), got {max_seconds}")
    keep = None if max_seconds in (None, math.inf) else round(max_seconds * rate)  # output samples used
    if isinstance(audio, (str, os.PathLike)):
        name = os.fspath(audio)
        if sample_rate is not None:
            raise ValueError(f"sample_rate is for arrays; {name} carries its own")
        data, sample_rate, seconds, start = _read_file(audio, keep, rate, max_seconds if whole else None)
    else:
        name = f"the {type(audio).__name__} given"
        if sample_rate is None:
            raise ValueError(f"{name} needs its sample_rate (e.g. load_audio(samples, 44100))")
        _reduced(sample_rate, rate)  # a clear error for a bad rate before any work
        data = _as_samples(audio, name)
        seconds = len(data) / sample_rate
        _check_length(name, seconds, max_seconds if whole else None)
        start = 0 if keep is None else tail_start(len(data), keep, sample_rate, rate)[0]
        data = data[start:]
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"{name} is {seconds:.2f} s long; cloning needs at least {MIN_SECONDS:g} s (5-12 s of speech is best)"
        )
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        at = (start + int(np.argmax(bad))) / sample_rate
        raise AudioError(f"{name} has NaN or infinite samples (the first at {at:.3f} s); export it again")
    loud = (np.abs(data) > MAX_PEAK).any(axis=1)
    if loud.any():
        at = (start + int(np.argmax(loud))) / sample_rate
        raise AudioError(
            f"{name} has samples far outside [-1, 1] (up to {float(np.abs(data).max()):.3g}, the first at {at:.3f} s); "
            "scale it to [-1, 1] (int16 values stored as floats: divide by 32768)"
        )
    mono = torch.from_numpy(data.mean(axis=1))  # (frames,): the channels' mean, as EnCodec's convert_audio
    out = resample(mono, sample_rate, rate)
    if start > 0:  # the first outputs of a cut tail see the cut; tail_start put them before the kept ones
        out = out[-keep:]
    if float(out.double().pow(2).mean().sqrt()) < SILENCE_RMS:  # of what is used
        used = "" if start == 0 else f"the last {max_seconds:g} s of "
        raise AudioError(f"{used}{name} is silent (RMS below {SILENCE_RMS:g}); record some speech")
    lo, hi = ADVISED_SECONDS
    if not whole and not lo <= seconds <= hi:
        used = "" if start == 0 else f"; only its last {max_seconds:g} s are read"
        warnings.warn(
            f"{name} is {seconds:.1f} s long{used}. Cloning works best from 5-12 s of clean speech by one "
            "speaker that ends at the end of a sentence (Bark continues from the last few seconds)",
            stacklevel=2,
        )
    return out.contiguous()


def load_clip(audio, sample_rate=None, max_seconds=MAX_SECONDS, whole=False):
    """A recording -> (24 kHz (L24,), 16 kHz (L16,)) float32 mono: what the EnCodec encoder and HuBERT read.

    The 16 kHz signal is made from the 24 kHz one (file -> 24 kHz -> 16 kHz), like the quantizer's training
    data. Arguments and errors as load_audio.
    """
    wav24 = load_audio(audio, sample_rate, SAMPLE_RATE, max_seconds, whole)
    return wav24, resample(wav24, SAMPLE_RATE, HUBERT_RATE)
