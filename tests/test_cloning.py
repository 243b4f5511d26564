"""Voice cloning end to end, on random weights: a stereo 44.1 kHz recording -> a voice that Suno's original
accepts and that nanobark speaks with (generate, a batch of cloned voices, long form); the CLI; bad input.

The parts are proven one by one elsewhere: the encoder against transformers and encodec (test_encoder.py),
HuBERT and the quantizer against transformers and a replica of the community's (test_hubert.py), the
resampler (test_audio.py). Here they are put together the way a user runs them.
"""

import os

import numpy as np
import pytest
import soundfile as sf

import nanobark.cli as cli
from helpers import ENV, references, run, speech, usage_error
from nanobark import Bark, generate_long, load_voice, save_voice
from nanobark.layout import COARSE_RATE_HZ, SEMANTIC_RATE_HZ

pytestmark = pytest.mark.slow  # cloning end to end, with a HuBERT of full size

TEXT = (  # two segments in long form
    "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
    "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
)


@pytest.fixture(scope="module")
def weights(cloning_sources):
    """-> (HuBERT snapshot folder, quantizer .pth file), random."""
    hubert, quantizer_dir = cloning_sources
    return hubert, os.path.join(quantizer_dir, "quantifier_hubert_base_ls960_14.pth")


@pytest.fixture(scope="module", autouse=True)
def _cache(cache):
    """cloning's converted weights go into `cache` (conftest.py's), set before `bark` loads."""


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "me.wav"
    sf.write(path, speech(), 44_100, subtype="FLOAT")
    return str(path)


@pytest.fixture(scope="module")
def voice(bark, weights, recording):
    hubert, quantizer = weights
    return bark.clone_voice(recording, hubert=hubert, quantizer=quantizer)


def test_a_cloned_voice_has_bark_s_shape_and_suno_s_original_accepts_it(voice, tmp_path):
    references()
    from bark.generation import _load_history_prompt

    semantic, coarse, fine = voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"]
    assert len(semantic) == 256 and fine.shape == (8, round(256 * COARSE_RATE_HZ / SEMANTIC_RATE_HZ))
    # (the tiny model's random codec maps this signal to few codes: the encoder's parity is test_encoder's job)
    assert (coarse == fine[:2]).all() and len(np.unique(semantic)) > 5
    path = save_voice(tmp_path / "me.npz", voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"])
    loaded = _load_history_prompt(path)  # Suno's own loader and checks
    # the coarse stage's assert on a voice: flattened coarse ids per semantic id, rounded, is 2 x 1.5
    assert round(loaded["coarse_prompt"].size / len(loaded["semantic_prompt"]), 1) == 3.0
    for key in voice:
        np.testing.assert_array_equal(loaded[key], voice[key])


def test_nanobark_speaks_with_cloned_voices(bark, voice, weights, tmp_path):
    audio = bark.generate("Hello there", voice=voice, seed=1, max_duration=0.2)
    assert audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()
    mono = tmp_path / "other.flac"
    sf.write(mono, speech(4.0, 16_000, 1, seed=1)[:, 0], 16_000)
    other = bark.clone_voice(str(mono), hubert=weights[0], quantizer=weights[1])
    both = bark.generate(["Hello", "Bonjour"], voice=[voice, other], seed=2, max_duration=0.2)
    assert len(both) == 2 and all(np.isfinite(a).all() for a in both)
    long = generate_long(bark, TEXT, voice=voice, seed=3, max_duration=0.2)
    assert long.ndim == 1 and np.isfinite(long).all()


def test_an_array_clones_like_its_file(bark, voice, weights):
    samples = speech()
    again = bark.clone_voice(samples, sample_rate=44_100, hubert=weights[0], quantizer=weights[1])
    for key in voice:
        np.testing.assert_array_equal(again[key], voice[key])


def test_the_clone_command_writes_a_voice_and_bad_recordings_write_nothing(
    converted, weights, recording, voice, tmp_path, capsys
):
    hubert, quantizer = weights
    base = ["clone", "--model", converted, "--hubert", hubert, "--quantizer", quantizer]
    assert cli.main([*base, recording, "--out", str(tmp_path / "me")]) == 0
    written = load_voice(str(tmp_path / "me.npz"))
    for key in voice:
        np.testing.assert_array_equal(written[key], voice[key])
    capsys.readouterr()
    bad = {
        "short.wav": (speech(0.5), "cloning needs at least 1 s"),
        "silent.wav": (np.zeros((24_000 * 3, 2), np.float32), "is silent"),
        "nan.wav": (np.where(np.arange(24_000 * 3)[:, None] == 5, np.nan, speech(3.0, 24_000)), "NaN"),
    }
    for name, (samples, said) in bad.items():
        sf.write(tmp_path / name, samples, 24_000, subtype="FLOAT")
    (tmp_path / "text.wav").write_text("not audio at all")
    bad["text.wav"] = (None, "text.wav")
    for name, (_, said) in bad.items():
        with pytest.raises(SystemExit) as e:
            cli.main([*base, str(tmp_path / name), "--out", str(tmp_path / f"{name}.npz")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == sorted(["me.npz", *bad])  # no voice written for a bad one
    # the other arguments, each a usage error before any model is loaded (they were exit 1, after loading)
    (tmp_path / "taken.npz").mkdir()
    cases = [
        (["--quantizer", str(tmp_path / "nothere" / "q.pth")], "no such file or folder, nor a file name"),
        (["--hubert", recording], "is a recording"),
        (["--out", str(tmp_path / "taken.npz")], "it is a folder"),
        (["--out", str(tmp_path / "no" / "me.npz")], "does not exist"),
    ]
    for args, said in cases:
        with pytest.raises(SystemExit) as e:
            cli.main(["clone", "--model", converted, recording, "--out", str(tmp_path / "x.npz"), *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and said in err, err


def test_a_cache_converted_before_the_encoder_existed_is_converted_again(hf_snapshot, tmp_path, monkeypatch):
    """An upgrade: the cached copy has no encoder.safetensors (nor the "encoder" entry); the next load
    converts it again, once, instead of every clone failing with "delete it and convert again"."""
    import json

    from nanobark.weights.checkpoint import load_encoder

    monkeypatch.setenv("NANOBARK_CACHE", str(tmp_path))
    Bark.from_pretrained(hf_snapshot, device="cpu")
    (cached,) = (p for p in (tmp_path / "local").iterdir() if p.is_dir())
    os.remove(cached / "encoder.safetensors")
    meta = json.loads((cached / "config.json").read_text())
    del meta["encoder"]
    (cached / "config.json").write_text(json.dumps(meta))
    bark = Bark.from_pretrained(hf_snapshot, device="cpu")
    assert bark.path == str(cached) and load_encoder(bark.path) is not None
    assert json.loads((cached / "config.json").read_text())["encoder"] is True


def test_a_clip_outside_the_advice_gets_one_note(converted, weights, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, speech(2.0), 44_100)
    hubert, quantizer = weights
    argv = ["clone", str(path), "--out", str(tmp_path / "v"), "--model", converted, "--hubert", hubert]
    r = run("-m", "nanobark", *argv, "--quantizer", quantizer, env={**ENV, "NANOBARK_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "5-12 s of clean speech" in line]
    assert len(notes) == 1 and notes[0].startswith("note: "), r.stderr  # was twice, as raw Python warnings


def test_a_long_recording_keeps_the_last_256_semantic_ids_and_the_frames_of_that_same_span():
    """Both streams end where the recording ends, so the voice is their last stretch: the first 256 ids would
    speak another part of the recording than the codes kept beside them."""
    from nanobark.cloning import prompt_from_tokens

    rng = np.random.default_rng(0)
    semantic = rng.integers(0, 10_000, 400)
    codes = rng.integers(0, 1024, (8, 601))  # 601 = round(400 * 75 / 49.9)
    voice = prompt_from_tokens(semantic, codes)
    frames = round(256 * COARSE_RATE_HZ / SEMANTIC_RATE_HZ)  # 385
    np.testing.assert_array_equal(voice["semantic_prompt"], semantic[-256:])
    np.testing.assert_array_equal(voice["fine_prompt"], codes[:, -frames:])
    np.testing.assert_array_equal(voice["coarse_prompt"], codes[:2, -frames:])
    short = prompt_from_tokens(semantic[:100], codes[:, :150])  # shorter than the history: all of it
    np.testing.assert_array_equal(short["semantic_prompt"], semantic[:100])
    np.testing.assert_array_equal(short["fine_prompt"], codes[:, :150])


def test_clone_out_keeps_an_upper_case_npz_suffix_as_it_is(converted, tmp_path, monkeypatch):
    """`nanobark clone --out ME.NPZ` writes ME.NPZ (not ME.NPZ.npz), and --voice ME.NPZ finds it."""
    import nanobark.cloning as cloning
    from nanobark.voices import find_voice_file, voice_file_name

    assert voice_file_name("ME.NPZ") == "ME.NPZ" and voice_file_name("me") == "me.npz"
    recording = tmp_path / "me.wav"
    sf.write(recording, speech(6.0), 44_100)
    voice = {  # what clone_voice would make (its models are not what this test is about)
        "semantic_prompt": np.arange(100),
        "coarse_prompt": np.zeros((2, 150), np.int64),
        "fine_prompt": np.zeros((8, 150), np.int64),
    }
    monkeypatch.setattr(cloning, "clone_voice", lambda *a, **k: voice)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["clone", str(recording), "--out", "ME.NPZ", "--model", converted]) in (0, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ME.NPZ", "me.wav"]
    assert find_voice_file("ME.NPZ") is not None


def test_a_tuple_is_taken_only_as_the_checked_pair_load_clip_returns(tmp_path):
    """Before, any tuple was read as (24 kHz, 16 kHz) audio and sample_rate was ignored: a stereo pair
    (left, right) at 44.1 kHz, or NaN, was cloned."""
    import torch

    from nanobark.audio import load_clip
    from nanobark.cloning import check_clip, clone_voice

    clip = load_clip(speech(), 44_100)
    assert check_clip(clip) is clip
    left, right = torch.from_numpy(speech(3.0, 44_100, 2).T.copy())
    nan = (torch.full((24_000,), float("nan")), torch.zeros(16_000))
    model = str(tmp_path / "never-loaded")  # every check comes before the model is looked for
    with pytest.raises(ValueError, match="sample_rate=44100 came with a tuple"):
        clone_voice(model, (left, right), sample_rate=44_100)
    for pair in [(left, right), nan, (clip[0].numpy(), clip[1].numpy()), clip[:1], (clip[0][:, None], clip[1])]:
        with pytest.raises(ValueError, match="a tuple is the .24 kHz, 16 kHz. pair"):
            clone_voice(model, pair)


def test_a_recording_or_a_plain_folder_as_quantizer_is_a_usage_error_before_loading(
    converted, tmp_path, monkeypatch, capsys
):
    """Before: exit 1 after loading, "the file is corrupt or truncated ... Delete it and download it again"
    about the user's own recording or folder."""
    import nanobark.cloning as cloning

    def refuse(*a, **k):
        raise AssertionError("cloning started")

    monkeypatch.setattr(cloning, "clone_voice", refuse)
    recording = tmp_path / "me.wav"
    sf.write(recording, speech(6.0), 44_100)
    (tmp_path / "quantizer").mkdir()
    base = ["clone", str(recording), "--out", str(tmp_path / "v.npz"), "--model", converted, "--quantizer"]
    for quantizer, said in [
        (recording, "is a recording; --quantizer takes"),
        (tmp_path / "quantizer", "folder without"),
    ]:
        err = usage_error([*base, str(quantizer)], capsys)
        assert said in err and "delete" not in err.lower(), err


def test_a_recording_far_beyond_full_scale_is_a_usage_error_before_cloning(converted, tmp_path, monkeypatch, capsys):
    """Before: speech scaled to 1e38 cloned into a voice of all-0 codes, and the command said it succeeded."""
    import nanobark.cloning as cloning

    def refuse(*a, **k):
        raise AssertionError("cloning started")

    monkeypatch.setattr(cloning, "clone_voice", refuse)
    recording = tmp_path / "loud.wav"
    sf.write(recording, speech(4.0, 24_000) * np.float32(1e38), 24_000, subtype="FLOAT")
    err = usage_error(["clone", str(recording), "--out", str(tmp_path / "v.npz"), "--model", converted], capsys)
    assert "samples far outside [-1, 1]" in err and not os.path.exists(tmp_path / "v.npz")


def nan_encoder(converted):
    """The model's EnCodec encoder with one NaN weight: every latent is NaN, and the nearest codeword of NaN is 0
    (what samples scaled to 1e38 did to a good encoder)."""
    import torch

    from nanobark.weights.checkpoint import load_encoder

    encoder = load_encoder(converted)
    with torch.no_grad():
        next(encoder.parameters()).view(-1)[0] = float("nan")
    return encoder


def test_a_voice_of_all_zero_codes_is_an_error_not_a_voice(converted):
    """Before: clone() checked only HuBERT's features (GroupNorm keeps them finite) and returned the voice."""
    import torch

    from nanobark.audio import AudioError, load_clip
    from nanobark.cloning import clone

    class Stub(torch.nn.Module):  # HuBERT and the quantizer, as far as clone() reads them
        def __init__(self, forward):
            super().__init__()
            self.p, self.f = torch.nn.Parameter(torch.zeros(1)), forward

        def forward(self, x):
            return self.f(x)

    hubert = Stub(lambda wav16: torch.ones(1, wav16.shape[1] // 320, 768))
    quantizer = Stub(lambda features: torch.arange(features.shape[1])[None] % 10_000)
    wav24, wav16 = load_clip(speech(), 44_100)
    encoder = nan_encoder(converted)
    assert not encoder.encode(wav24[None]).any()  # the bug is live: every code is 0
    with pytest.raises(AudioError, match="code 0 in every frame"):
        clone(wav24, wav16, encoder, hubert, quantizer)


def test_the_clone_command_exits_2_for_a_recording_that_encodes_to_nothing(
    converted, weights, recording, tmp_path, monkeypatch, capsys
):
    import nanobark.cloning as cloning

    monkeypatch.setattr(cloning, "load_encoder", lambda path, device: nan_encoder(converted))
    argv = ["clone", recording, "--out", str(tmp_path / "v.npz"), "--model", converted]
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--hubert", weights[0], "--quantizer", weights[1]])
    err = capsys.readouterr().err.strip().splitlines()  # what it does, then the one error line
    assert e.value.code == 2 and err[0].startswith("cloning: making a voice"), err
    assert "code 0 in every frame" in err[-1] and "Traceback" not in str(err) and os.listdir(tmp_path) == []


def test_a_pair_far_beyond_full_scale_or_silent_is_refused_as_a_recording_is(tmp_path):
    """clone_voice given a tuple checks what load_audio checks in a file (it checked only for NaN)."""
    from nanobark.audio import AudioError, load_clip
    from nanobark.cloning import clone_voice

    wav24, wav16 = load_clip(speech(), 44_100)
    model = str(tmp_path / "never-loaded")
    for pair, said in [((wav24 * 1e12, wav16 * 1e12), "far outside"), ((wav24 * 0, wav16 * 0), "is silent")]:
        with pytest.raises(AudioError, match=said):
            clone_voice(model, pair)


def test_a_recording_is_cloned_once_keyed_by_its_content(converted, weights, tmp_path, monkeypatch, capsys):
    """cache=True: the same samples by the same weights (a copy under another name too) come from the cache;
    other samples are cloned. Before, `--voice me.wav` was cloned again on every run, saying nothing."""
    import nanobark.cloning as cloning

    calls, real = [], cloning.clone
    monkeypatch.setattr(cloning, "clone", lambda *a: calls.append(a) or real(*a))
    me, copy = tmp_path / "me.wav", tmp_path / "copy.wav"
    sf.write(me, speech(), 44_100, subtype="FLOAT")
    copy.write_bytes(me.read_bytes())
    how = dict(hubert=weights[0], quantizer=weights[1], progress=True, cache=True)
    first = cloning.clone_voice(converted, str(me), **how)
    err = capsys.readouterr().err
    assert "making a voice of the recording" in err and "kept in" in err and len(calls) == 1, err
    kept = err.split("kept in ")[1].split(" for the next run")[0]
    assert kept == os.path.join(os.environ["NANOBARK_CACHE"], "voices") and len(os.listdir(kept)) == 1
    again = cloning.clone_voice(converted, str(copy), **how)
    assert len(calls) == 1 and "was cloned before" in capsys.readouterr().err
    for key in first:
        np.testing.assert_array_equal(again[key], first[key])
    sf.write(me, speech(seed=1), 44_100, subtype="FLOAT")  # other content under the same name: cloned
    cloning.clone_voice(converted, str(me), **how)
    assert len(calls) == 2 and len(os.listdir(kept)) == 2
    cloning.clone_voice(converted, str(copy), hubert=weights[0], quantizer=weights[1])  # cache=False: cloned
    assert len(calls) == 3


def test_speak_with_a_recording_says_what_it_does_and_clones_it_once(converted, weights, tmp_path, monkeypatch, capsys):
    import nanobark.cloning as cloning

    calls, real, fetch = [], cloning.clone, cloning.cloning_weights
    monkeypatch.setattr(cloning, "clone", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(cloning, "cloning_weights", lambda q, h: fetch(weights[1], weights[0]))  # not downloaded
    me = tmp_path / "me.wav"
    sf.write(me, speech(seed=2), 44_100, subtype="FLOAT")
    argv = ["Hi", "--voice", str(me), "--model", converted, "--max-duration", "0.1", "--out", str(tmp_path / "o.wav")]
    for said in ["cloning: making a voice of the recording", "cloning: this recording was cloned before"]:
        assert cli.main(argv) == 0
        err = capsys.readouterr().err
        assert said in err and len(calls) == 1, err
