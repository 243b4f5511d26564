"""Bark.from_pretrained on a Hub-layout snapshot, the public stage API, scripts/generate.py, and misuse."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import GENERATE, npz_voice, run
from nanobark import Bark
from nanobark.voices import PresetIndex, VoiceError
from weights_convert.references import suno_prompts


def test_from_pretrained_snapshot_converts_once(hf_snapshot, cache, monkeypatch):
    first = Bark.from_pretrained(hf_snapshot, device="cpu")
    names = sorted(os.listdir(os.path.join(cache, "local")))  # one copy, its lock file, no temporary folder
    assert len(names) == 2 and names[1] == names[0] + ".lock"
    import nanobark.weights.hub as hub

    def no_second_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(hub, "write_converted", no_second_conversion)
    second = Bark.from_pretrained(hf_snapshot, device="cpu")
    a = first.generate("Hello dog", voice="v2/en_speaker_6", seed=3, max_duration=0.3)
    b = second.generate("Hello dog", voice="v2/en_speaker_6", seed=3, max_duration=0.3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) % 320 == 0 and np.isfinite(a).all()


def test_stage_api_shapes_and_dtypes(bark):
    sem = bark.text_to_semantic("Hello, my dog is cute", max_duration=0.4)
    assert sem.dtype == np.int64 and sem.shape == (20,)
    coarse = bark.semantic_to_coarse(sem, voice="announcer")
    assert coarse.dtype == np.int64 and coarse.shape == (2, 30) and 0 <= coarse.min() and coarse.max() < 1024
    fine = bark.coarse_to_fine(coarse, temp=None)
    assert fine.shape == (8, 30) and (fine[:2] == coarse).all() and fine.max() < 1024
    audio = bark.decode(fine)
    assert audio.dtype == np.float32 and audio.shape == (9600,)
    assert bark.sample_rate == 24_000


def test_seed_is_reproducible_and_leaves_global_rng_alone(bark):
    import torch

    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    a = bark.generate("Hello", seed=1, max_duration=0.2)
    assert torch.equal(torch.rand(1), expected_next)
    np.testing.assert_array_equal(a, bark.generate("Hello", seed=1, max_duration=0.2))
    assert not np.array_equal(a, bark.generate("Hello", seed=2, max_duration=0.2))


def test_save_voice_round_trips_into_the_original(bark, tmp_path):
    from bark.generation import _load_history_prompt

    full, audio = bark.generate("Hello", seed=0, max_duration=0.3, output_full=True)
    path = bark.save_voice(tmp_path / "me", full)
    assert path.endswith("me.npz") and os.listdir(tmp_path) == ["me.npz"]
    loaded = _load_history_prompt(path)
    for k in full:
        np.testing.assert_array_equal(loaded[k], full[k])
    assert bark.text_to_semantic("Hello", voice=path, max_duration=0.1).shape == (5,)


def test_misuse_gets_clear_errors(bark, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        bark.generate("   \n\t ")
    with pytest.raises(VoiceError, match="v2/en_speaker_6"):
        bark.generate("Hello", voice="v2/en_speakr_6")
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        semantic_prompt=np.zeros(10, np.int64),
        coarse_prompt=np.zeros((3, 15), np.int64),
        fine_prompt=np.zeros((8, 15), np.int64),
    )
    with pytest.raises(VoiceError, match="coarse_prompt has shape"):
        bark.generate("Hello", voice=str(bad))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        bark.generate("Hello", text_temp=0)
    with pytest.raises(ValueError, match="top_p"):
        bark.generate("Hello", top_p=1.5)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub id"):
        Bark.from_pretrained(str(tmp_path / "missing_model"))
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ValueError, match="not a Bark checkpoint"):
        Bark.from_pretrained(str(tmp_path / "empty_model"))


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_cli_writes_the_same_audio_as_the_api(bark, converted, tmp_path, ext):
    out = tmp_path / f"hello{ext}"
    flags = f"--model {converted} --seed 4 --max-duration 0.3 --voice v2/en_speaker_6 --quiet".split()
    r = run(GENERATE, "Hello, my dog is cute", *flags, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "s of audio in" in r.stdout
    audio, sr = sf.read(out, dtype="float32")
    expected = bark.generate("Hello, my dog is cute", voice="v2/en_speaker_6", seed=4, max_duration=0.3)
    assert sr == 24_000 and audio.shape == expected.shape
    assert np.abs(audio - np.clip(expected, -1, 1)).max() <= 1 / 2**15 + 1e-6  # 16-bit quantization
    assert sf.info(out).subtype == "PCM_16"
    assert sorted(os.listdir(tmp_path)) == [out.name]


@pytest.mark.slow
def test_cli_reads_stdin_and_rejects_bad_output_before_generating(converted, tmp_path):
    r = run(GENERATE, "--model", converted, "--out", str(tmp_path / "no_such_dir" / "x.wav"), input="Hello")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run(GENERATE, "Hello", "--model", converted, "--out", str(tmp_path / "x.aiff"))
    assert r.returncode == 2 and ".wav" in r.stderr
    r = run(GENERATE, "--model", converted, "--out", str(tmp_path / "x.wav"), input="   ")
    assert r.returncode == 2 and "empty" in r.stderr
    r = run(GENERATE, "Hello", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.wav"))
    # a model path that is not one is an argument problem, found before loading (it was exit 1)
    assert r.returncode == 2 and "no such folder, and not a Hub id" in r.stderr and "Traceback" not in r.stderr
    flags = f"--model {converted} --seed 1 --max-duration 0.1 --quiet".split()
    r = run(GENERATE, *flags, "--out", str(tmp_path / "s.wav"), input="Hello from stdin")
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / "s.wav").samplerate == 24_000
    assert sorted(os.listdir(tmp_path)) == ["s.wav"]


@pytest.mark.parametrize("damage", ["temperature", "weights"])
def test_nan_probabilities_stop_with_an_error_instead_of_token_0(converted, damage, monkeypatch):
    """A temperature that overflows the logits, or a NaN weight: seeded sampling used to draw token 0 silently."""
    bark = Bark.from_pretrained(converted, device="cpu")
    kwargs = dict(seed=0, max_duration=0.2)
    if damage == "temperature":  # now refused by the check, before any work
        with pytest.raises(ValueError, match="temperature 1e-39 is too small .* use at least 1e-06, or top_k=1"):
            bark.generate("Hello", text_temp=1e-39, **kwargs)
        return
    with torch.no_grad():
        bark.models["coarse"].lm_head.weight[10_500, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or Inf: the model's weights may be damaged, or the temperature"):
        bark.generate("Hello", **kwargs)


@pytest.fixture
def forwards(bark):
    """Names of the modules of any stage that ran while the test did."""
    ran = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: ran.append(type(mod).__name__))
        for model in bark.models.values()
        for m in model.modules()
    ]
    yield ran
    for h in hooks:
        h.remove()


def test_the_forward_spy_sees_work(bark, forwards):
    bark.text_to_semantic("Hello", max_duration=0.02)
    assert forwards


@pytest.mark.parametrize(
    "kwargs, said",
    [
        (dict(text_temp=0), "temperature must be > 0, got 0"),
        (dict(waveform_temp=-0.5), "temperature must be > 0, got -0.5"),
        (dict(fine_temp=0.0), r"temperature must be > 0, got 0.0 \(use None for argmax\)"),
        (dict(text_temp=float("nan")), "temperature must be a finite number or None, got nan"),
        (dict(top_p=0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=0), "top_k must be an integer >= 1"),
        (dict(top_k=2.5), "top_k must be an integer >= 1"),
        (dict(min_eos_p=1.5), r"min_eos_p must be in \[0, 1\]"),
        (dict(text="  \n\t"), "text is empty"),
        (dict(text="\x00\u200b\ufeff"), "text produced no tokens"),
    ],
)
def test_bad_generate_arguments_fail_before_any_forward(bark, forwards, kwargs, said):
    with pytest.raises(ValueError, match=said):
        bark.generate(**{"text": "Hello", **kwargs})
    assert forwards == []


def test_preset_typo_lists_the_right_name_before_any_forward(bark, forwards, monkeypatch, tmp_path):
    monkeypatch.setattr(bark, "presets", PresetIndex.from_npz_dir(suno_prompts()))
    with pytest.raises(VoiceError, match="unknown voice preset 'v2/de_speakr_3'; close names: v2/de_speaker_3"):
        bark.generate("Hallo", voice="v2/de_speakr_3")
    with pytest.raises(VoiceError, match="semantic_prompt values must lie in 0..9999"):
        bark.generate("Hallo", voice=npz_voice(tmp_path / "v.npz", semantic_prompt=np.full(309, -1)))
    assert forwards == []


@pytest.mark.parametrize(
    "kwargs, said",
    [
        (dict(dtype="float64"), "dtype must be one of float32, float16, bfloat16, got 'float64'"),
        (dict(dtype="fp8"), "got 'fp8'"),
        (dict(device="cuda"), "no CUDA GPU; use device='cpu'"),
        (dict(device="mps"), r"has no MPS \(Apple silicon"),  # was: a "corrupt model, delete it" message
        (dict(device="meta"), "device 'meta' is not supported"),
        (dict(device="xpu"), "device 'xpu' is not supported"),
        (dict(device="gpu"), "'gpu' is not a device"),
    ],
)
def test_bad_from_pretrained_arguments_fail_before_loading(kwargs, said, converted, monkeypatch):
    import nanobark.bark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_loading(*a, **k):
        raise AssertionError("the model was looked up before the arguments were checked")

    monkeypatch.setattr(nanobark.bark, "resolve", no_loading)
    with pytest.raises(ValueError, match=said):
        Bark.from_pretrained(converted, **kwargs)
