"""Audio in: the resampler against torchaudio's own code, and loading files and arrays for cloning.

The reference is torchaudio's own `resample`, run from its source file (torchaudio cannot be imported
beside this torch: CI keeps a copy of that file before it uninstalls torchaudio, see .ci/run).
torchaudio builds its filter in the input's dtype, nanobark always in float64: in float64
the two agree to rounding, and in float32 nanobark stays closer to that exact result than torchaudio does.
"""

import ast
import functools
import importlib.machinery
import math
import os
import types
import warnings
from fractions import Fraction
from typing import Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from nanobark.audio import (
    HUBERT_RATE,
    AudioError,
    AudioFileNotFoundError,
    load_audio,
    load_clip,
    resample,
    resampled_length,
    sinc_kernel,
    tail_start,
)

COMMON = [(8000, 24000), (16000, 24000), (22050, 24000), (44100, 24000), (48000, 24000), (24000, 16000)]
OTHER = [(11025, 16000), (44100, 16000), (24000, 44100), (32000, 24000), (96000, 24000), (7, 3)]
VENDORED = ("_CPU", "_get_sinc_resample_kernel", "_apply_sinc_resample_kernel", "resample")


# ---- the reference is torchaudio's code ----------------------------------------------------------------


def torchaudio_source():
    """torchaudio/functional/functional.py of an installed torchaudio (found, not imported), or the file
    named by NANOBARK_TORCHAUDIO_FUNCTIONAL (CI keeps a copy before it uninstalls torchaudio)."""
    path = os.environ.get("NANOBARK_TORCHAUDIO_FUNCTIONAL")
    if path:
        return path
    # searched on sys.path, not in sys.modules: the tests stand an empty module in for torchaudio there
    spec = importlib.machinery.PathFinder.find_spec("torchaudio")  # the package, without running its __init__
    if spec and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "functional", "functional.py")
        return path if os.path.exists(path) else None
    return None


def _name(node):
    return getattr(node, "name", None) or getattr(getattr(node, "targets", [None])[0], "id", None)


@functools.cache
def load_reference():
    """torchaudio's own resample functions, run from its source file: the package cannot be imported beside
    this torch (its compiled extension loads at `import torchaudio`), but these functions are plain torch."""
    path = torchaudio_source()
    if path is None:
        message = (
            "no torchaudio source for the resampler's reference: install torchaudio, or set "
            "NANOBARK_TORCHAUDIO_FUNCTIONAL to a copy of torchaudio/functional/functional.py"
        )
        if os.environ.get("NANOBARK_REQUIRE_REFERENCES"):
            pytest.fail(message)
        pytest.skip(message)
    tree = ast.parse(open(path, encoding="utf-8").read())
    kept = [node for node in tree.body if _name(node) in VENDORED]
    assert sorted(_name(node) for node in kept) == sorted(VENDORED), f"{path} has changed its resample"
    namespace = {"math": math, "warnings": warnings, "Optional": Optional, "torch": torch, "Tensor": torch.Tensor}
    exec(compile(ast.Module(body=kept, type_ignores=[]), path, "exec"), namespace)
    return types.SimpleNamespace(**{name: namespace[name] for name in VENDORED})


class _Reference:
    """torchaudio's functions, loaded on first use: a test that needs them is skipped (failed in CI) without."""

    def __getattr__(self, name):
        if name.startswith("__"):  # pytest's collection looks for __test__ and the like
            raise AttributeError(name)
        return getattr(load_reference(), name)


ref = _Reference()


# ---- the resampler ---------------------------------------------------------------------------------------


def signals(orig, new, length=30_011):
    """A random batch (2, L) and a sum of sines up into the filter's edge (1, L), at `orig` Hz."""
    g = torch.Generator().manual_seed(orig)
    t = torch.arange(length, dtype=torch.float64) / orig
    low = min(orig, new)  # the filter passes up to 0.99 of its Nyquist, 0.495 * low
    freqs = (100.0 * low / 24000, 0.02 * low, 0.2 * low, 0.45 * low, 0.49 * low)
    sine = sum(0.2 * torch.sin(2 * math.pi * f * t + k) for k, f in enumerate(freqs))
    return torch.randn(2, length, generator=g, dtype=torch.float64), sine[None]


@pytest.mark.parametrize("orig, new", COMMON + OTHER)
def test_the_filter_is_torchaudios(orig, new):
    g = math.gcd(orig, new)
    theirs, their_width = ref._get_sinc_resample_kernel(orig, new, g, dtype=torch.float64)
    ours, width = sinc_kernel(orig // g, new // g)
    assert width == their_width and ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-12


@pytest.mark.parametrize("orig, new", COMMON + OTHER)
def test_resample_matches_torchaudio(orig, new):
    for x in signals(orig, new):
        exact = ref.resample(x, orig, new)  # torchaudio in float64: its filter without rounding
        assert (resample(x, orig, new) - exact).abs().max() < 1e-12
        assert (resample(x.float(), orig, new) - exact).abs().max() < 1e-5


@pytest.mark.parametrize("orig, new", COMMON)
def test_resample_matches_torchaudio_in_float32(orig, new):
    # torchaudio's float32 run builds its filter in float32: 4e-5 off the exact result on unit noise at
    # 22.05 kHz, 1e-4 at 11.025 -> 16 kHz (so not in this list). At a speech-like level (sines peaking
    # at 0.5) and the common rates, the two float32 results agree within 1e-5 (4e-6 at most, at 22.05 kHz)
    sine = 0.5 * signals(orig, new)[1].float()
    assert (resample(sine, orig, new) - ref.resample(sine, orig, new)).abs().max() < 1e-5


@pytest.mark.parametrize("orig, new", COMMON + OTHER)
def test_output_lengths(orig, new):
    for length in (0, 1, 2, 319, orig - 1, orig, orig + 1, 3 * orig + 7):
        expected = math.ceil(Fraction(length * new, orig))
        assert resampled_length(length, orig, new) == expected
        assert resample(torch.zeros(length), orig, new).shape == (expected,)
        if length:  # torchaudio cannot take an empty signal
            assert ref.resample(torch.zeros(length), orig, new).shape == (expected,)
    # a second of audio is a second of audio
    assert resample(torch.zeros(orig * 2), orig, new).shape == (new * 2,)


def test_batches_and_the_identity():
    x = torch.randn(2, 3, 4410)
    y = resample(x, 44100, 24000)
    assert y.shape == (2, 3, 2400)
    assert (resample(x[1, 2], 44100, 24000) - y[1, 2]).abs().max() < 1e-6  # 1-D as one row of a batch
    assert (resample(x[1], 44100, 24000) - y[1]).abs().max() < 1e-6
    assert resample(x, 24000, 24000) is x and resample(x, 48000.0, 48000) is x
    assert resample(x.double(), 44100, 24000).dtype == torch.float64


def test_bad_rates_and_dtypes():
    for orig, new in ((0, 24000), (-8000, 24000), (22050.5, 24000), (24000, float("nan")), (True, 2)):
        with pytest.raises(ValueError, match="positive whole numbers"):
            resample(torch.zeros(10), orig, new)
    with pytest.raises(TypeError, match="floating point"):
        resample(torch.zeros(10, dtype=torch.int16), 8000, 24000)


@pytest.mark.parametrize("orig, new", COMMON + [(24000, 24000), (7, 3), (24000, 44100)])
def test_a_tail_resamples_like_the_whole(orig, new):
    x = torch.randn(5 * orig + 13, dtype=torch.float64)
    full = resample(x, orig, new)
    for keep in (1, new // 3, new, len(full) - 1, len(full), len(full) + 5):
        start, drop = tail_start(len(x), keep, orig, new)
        tail = resample(x[start:], orig, new)[drop:]
        assert len(tail) == min(keep, len(full))
        assert (tail - full[-keep:]).abs().max() < 1e-12
    assert tail_start(len(x), new, orig, new)[0] >= 3 * orig  # and the cut does skip the start


# ---- loading ---------------------------------------------------------------------------------------------


def speech_like(seconds, rate, channels=2, seed=0):
    """(frames, channels) float32: different sines per channel plus a little noise, well under full scale."""
    g = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    cols = [0.3 * np.sin(2 * np.pi * (150 + 90 * c) * t) + 0.05 * g.standard_normal(len(t)) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def expected(path, rate=24000):
    """What loading should give: soundfile's own samples, the mean of the channels, torchaudio's resample."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return ref.resample(torch.from_numpy(data.mean(axis=1)).double(), sr, rate)


FILES = [  # name, rate, channels, soundfile subtype
    ("stereo.wav", 44100, 2, "PCM_16"),
    ("stereo_float.wav", 44100, 2, "FLOAT"),
    ("mono.wav", 48000, 1, "PCM_16"),
    ("mono_float.wav", 48000, 1, "FLOAT"),
    ("phone.wav", 8000, 1, "PCM_16"),
    ("three.wav", 22050, 3, "PCM_24"),
    ("stereo.flac", 44100, 2, "PCM_16"),
    ("mono.flac", 16000, 1, "PCM_24"),
    ("stereo.ogg", 44100, 2, "VORBIS"),
    ("native.flac", 24000, 2, "PCM_16"),
]


@pytest.mark.parametrize("name, rate, channels, subtype", FILES)
def test_files_load_as_mono_24k(tmp_path, name, rate, channels, subtype):
    path = tmp_path / name
    sf.write(path, speech_like(6, rate, channels), rate, subtype=subtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 6 s is a good length: no warning
        wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.shape == (math.ceil(sf.info(path).frames * 24000 / rate),)
    assert (wav - expected(path)).abs().max() < 1e-5
    assert torch.equal(load_audio(str(path)), wav)


def test_the_downmix_is_the_mean_of_the_channels(tmp_path):
    samples = speech_like(4, 44100, 2)
    samples[:, 1] *= -0.5  # channels that differ: picking one of them, or summing them, is wrong
    sf.write(tmp_path / "a.wav", samples, 44100, subtype="FLOAT")
    mean = ref.resample(torch.from_numpy(samples.mean(axis=1)).double(), 44100, 24000)
    assert (load_audio(tmp_path / "a.wav") - mean).abs().max() < 1e-5


def test_arrays_and_tensors_load_like_files(tmp_path):
    samples = speech_like(4, 44100, 2)
    sf.write(tmp_path / "a.wav", samples, 44100, subtype="FLOAT")
    from_file = load_audio(tmp_path / "a.wav")
    for audio in (samples, samples.T, torch.from_numpy(samples.T), torch.from_numpy(samples).double()):
        assert (load_audio(audio, 44100) - from_file).abs().max() < 1e-6
    assert (load_audio(samples.mean(axis=1), np.int64(44100)) - from_file).abs().max() < 1e-6
    pcm = np.round(samples * 32767).astype(np.int16)  # int16 PCM as scipy's wavfile gives it
    sf.write(tmp_path / "b.wav", pcm, 44100, subtype="PCM_16")
    for audio in (pcm, torch.from_numpy(pcm)):
        assert (load_audio(audio, 44100) - load_audio(tmp_path / "b.wav")).abs().max() < 1e-6
    # to another rate, and kept at its own
    assert load_audio(samples, 44100, rate=16000).shape == (64000,)
    assert torch.equal(load_audio(samples, 44100, rate=44100), torch.from_numpy(samples.mean(axis=1)))
    assert torch.equal(load_audio(samples, 44100, max_seconds=math.inf), load_audio(samples, 44100, max_seconds=None))


@pytest.mark.parametrize("rate", [44100, 8000, 24000, 22050])
def test_a_long_file_is_read_from_its_tail(tmp_path, rate, monkeypatch):
    path = tmp_path / "long.flac"
    sf.write(path, speech_like(12, rate, 2), rate, subtype="PCM_16")
    whole = load_audio(path, max_seconds=None)
    read = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: read.append(real_read(self, *a, **k)) or read[-1])
    tail = load_audio(path, max_seconds=5)
    assert tail.shape == (5 * 24000,)
    assert (tail - whole[-5 * 24000 :]).abs().max() < 1e-6
    assert len(read) == 1 and len(read[0]) < 5.1 * rate  # the first 7 s were never read


def test_the_default_limit_and_its_warning(tmp_path):
    path = tmp_path / "lecture.wav"
    sf.write(path, speech_like(40, 44100, 2), 44100, subtype="PCM_16")
    with pytest.warns(UserWarning, match=r"40\.0 s long; only its last 30 s are read.*5-12 s"):
        tail = load_audio(path)
    assert tail.shape == (30 * 24000,)
    assert (tail - expected(path)[-30 * 24000 :]).abs().max() < 1e-5


def test_a_short_clip_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"2\.0 s long\. Cloning works best from 5-12 s"):
        load_audio(speech_like(2, 24000), 24000)


def test_load_clip_gives_both_rates(tmp_path):
    path = tmp_path / "me.wav"
    sf.write(path, speech_like(6, 44100, 2), 44100, subtype="PCM_16")
    wav24, wav16 = load_clip(path)
    assert wav24.shape == (144000,) and wav16.shape == (96000,) and wav16.dtype == torch.float32
    assert torch.equal(wav24, load_audio(path))
    # file -> 24 kHz -> 16 kHz, as the quantizer's training data was
    assert (wav16 - ref.resample(expected(path), 24000, HUBERT_RATE)).abs().max() < 1e-5


# ---- bad input -------------------------------------------------------------------------------------------


def test_bad_files(tmp_path):
    cases = {"missing.wav": None, "folder.wav": "folder", "empty.wav": b"", "notes.wav": b"not audio at all"}
    # a WAV header that says 0 channels, and a valid WAV with no samples
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("0100 0000 c05d0000 00000000 0000 1000")
    cases["nochannels.wav"] = b"RIFF" + (36).to_bytes(4, "little") + b"WAVE" + fmt + b"data" + bytes(4)
    sf.write(tmp_path / "nosamples.wav", np.zeros((0, 1), np.float32), 24000)
    expect = {
        "missing.wav": (AudioFileNotFoundError, "no such audio file"),
        "folder.wav": (AudioError, "is a folder"),
        "empty.wav": (AudioError, r"is empty \(0 bytes\)"),
        "notes.wav": (AudioError, "not an audio file soundfile can read.*ffmpeg"),
        "nochannels.wav": (AudioError, "not an audio file soundfile can read"),
        "nosamples.wav": (AudioError, r"holds no audio \(0 frames"),
    }
    for name, content in cases.items():
        if content == "folder":
            (tmp_path / name).mkdir()
        elif content is not None:
            (tmp_path / name).write_bytes(content)
    for name, (error, message) in expect.items():
        path = tmp_path / name
        with pytest.raises(error, match=message) as e:
            load_audio(path)
        assert str(path) in str(e.value)
        with pytest.raises(error):
            load_clip(path)


def test_bad_clips(tmp_path):
    short = speech_like(0.9, 44100)
    nan = speech_like(6, 44100)
    nan[44100 * 5 + 441, 1] = np.nan
    inf = speech_like(6, 44100)
    inf[10, 0] = -np.inf
    quiet = speech_like(6, 44100) * 1e-5
    cases = [
        (short, r"is 0\.90 s long; cloning needs at least 1 s"),
        (nan, r"NaN or infinite samples \(the first at 5\.010 s\)"),
        (inf, r"NaN or infinite samples \(the first at 0\.000 s\)"),
        (np.zeros((6 * 44100, 2), np.float32), r"is silent \(RMS below 0\.0001\)"),
        (quiet, "is silent"),
    ]
    for i, (samples, message) in enumerate(cases):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, samples, 44100, subtype="FLOAT")
        with pytest.raises(AudioError, match=message) as e:
            load_audio(path)
        assert str(path) in str(e.value)
        with pytest.raises(AudioError, match=message):
            load_audio(samples, 44100)
    # only the used tail is checked: a silent start is fine, a silent end of a long file is not
    sound = speech_like(40, 8000)
    sound[: 5 * 8000] = 0
    with pytest.warns(UserWarning):
        load_audio(sound, 8000)
    sound[-30 * 8000 :] = 0
    with pytest.raises(AudioError, match="the last 30 s of the ndarray given is silent"):
        load_audio(sound, 8000)


def test_bad_arrays_and_arguments(tmp_path):
    good = speech_like(2, 8000)
    bad = {
        "a list": ([0.1] * 16000, "is a list; pass a file path, or a numpy array"),
        "bytes": (b"RIFF", "is a bytes"),
        "int64": (np.ones(16000, np.int64), "dtype int64; pass float samples"),
        "bool": (np.ones(16000, bool), "dtype bool"),
        "complex": (np.ones(16000, np.complex64), "dtype complex64"),
        "text": (np.array(["a"] * 16000), "dtype <U1"),
        "3-D": (np.zeros((1, 2, 16000), np.float32), r"shape \(1, 2, 16000\)"),
        "empty": (np.zeros(0, np.float32), "is empty"),
        "no channels": (np.zeros((0, 16000), np.float32), "is empty"),
        "int tensor": (torch.ones(16000, dtype=torch.int64), "dtype int64"),
    }
    for what, (audio, message) in bad.items():
        with pytest.raises(AudioError, match=message):
            load_audio(audio, 8000)
    with pytest.raises(ValueError, match="needs its sample_rate"):
        load_audio(good)
    with pytest.raises(ValueError, match="positive whole numbers"):
        load_audio(good, 8000.5)
    sf.write(tmp_path / "a.wav", good, 8000)
    with pytest.raises(ValueError, match="sample_rate is for arrays"):
        load_audio(tmp_path / "a.wav", 8000)
    with pytest.raises(ValueError, match="max_seconds must be at least 1"):
        load_audio(good, 8000, max_seconds=0.5)
    assert issubclass(AudioError, ValueError) and issubclass(AudioFileNotFoundError, FileNotFoundError)


def test_an_odd_sample_rate_is_refused_before_gigabytes_are_allocated(tmp_path):
    """44101 Hz shares no large factor with 24000: the filter bank would be 24000 x 44113 float64 (8.5 GB)."""
    path = tmp_path / "odd.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(44_101 * 2) * 0.1, 44_101)
    with pytest.raises(AudioError, match="share no large factor.*ffmpeg"):
        load_audio(str(path))
    for rate in (8_000, 11_025, 22_050, 32_000, 37_800, 44_100, 48_000, 96_000):  # common rates still work
        resample(torch.zeros(rate // 10), rate, 24_000)


def test_a_clip_of_exactly_the_minimum_length_loads_and_one_sample_less_is_refused(tmp_path):
    from nanobark.audio import MIN_SECONDS

    rate = 8000
    n = round(MIN_SECONDS * rate)
    assert n / rate == MIN_SECONDS
    clip = speech_like(2 * MIN_SECONDS, rate)
    for frames, ok in ((n, True), (n - 1, False)):
        path = tmp_path / f"{frames}.wav"
        sf.write(path, clip[:frames], rate, subtype="FLOAT")
        for audio, sample_rate in ((clip[:frames], rate), (path, None)):
            if ok:
                with pytest.warns(UserWarning, match="works best from 5-12 s"):
                    out = load_audio(audio, sample_rate)
                assert out.shape == (round(MIN_SECONDS * 24_000),)
            else:
                with pytest.raises(AudioError, match=f"cloning needs at least {MIN_SECONDS:g} s"):
                    load_audio(audio, sample_rate)


# ---- issue 18 (S5): a recording's cost is bounded in samples (rate x channels x seconds), not seconds


BOMBS = [  # (rate, channels, frames, said): each 8 KB on disk, gigabytes of float32 once decoded
    (240_000_000, 1, 288_000_000, "sample rate of 240,000,000 Hz"),
    (2_136_000_000, 1, 2_136_000_000, "sample rate of 2,136,000,000 Hz"),
    (48_000, 1024, 240_000, "240,000 frames of 1024 channels"),
    (48_000, 1024, 1_440_000, "1,440,000 frames of 1024 channels"),
    (384_000, 16, 30 * 384_000, "11,520,000 frames of 16 channels"),
]


@pytest.mark.parametrize("rate, channels, frames, said", BOMBS)
def test_a_recording_that_would_decode_to_gigabytes_is_refused_from_its_header(rate, channels, frames, said, tmp_path):
    """Before: 30 s at 240 MHz (or of 1024 channels) was read whole: 3.9 GB for a 288 MB sparse file."""
    from helpers import sparse_wav

    path = sparse_wav(tmp_path / "bomb.wav", rate, channels, frames)
    with pytest.raises(AudioError, match=said):
        load_clip(path)


def test_a_high_rate_stereo_clip_under_the_sample_bound_still_loads(tmp_path):
    from helpers import sparse_wav

    wav24, wav16 = load_clip(sparse_wav(tmp_path / "hi.wav", 384_000, 2, 2 * 384_000))
    assert wav24.shape[-1] == 2 * 24_000 and wav16.shape[-1] == 2 * 16_000


def test_samples_far_outside_full_scale_are_refused(tmp_path):
    """Before: a float WAV of speech scaled to 1e38 (or 1e12) was cloned into a voice whose codes were all 0,
    and cloning reported success. A little over full scale is fine; int16 values stored as floats are not."""
    ok = speech_like(6, 44100) * 10  # peaks near 4: a hot float mix
    load_audio(ok, 44100)
    for scale, peak in ((32768, "1.\\d+e\\+04"), (1e38, "5.\\d+e\\+37")):
        loud = speech_like(6, 44100) * np.float32(scale)
        path = tmp_path / "loud.wav"
        sf.write(path, loud, 44100, subtype="FLOAT")
        message = rf"samples far outside \[-1, 1\] \(up to {peak}, the first at 0\.000 s\); scale it"
        with pytest.raises(AudioError, match=message) as e:
            load_clip(path)
        assert str(path) in str(e.value)
        with pytest.raises(AudioError, match=message):
            load_audio(loud, 44100)
