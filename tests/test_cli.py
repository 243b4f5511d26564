"""The `nanobark` command (nanobark/cli/__init__.py): subcommands, arguments checked before any model is loaded, exit
codes, speed options, progress. The installed command itself, in a fresh venv, is tests/test_install.py."""

import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import nanobark.cli as cli
from helpers import (
    ENV,
    GENERATE,
    HANG,
    ROOT,
    MakesFile,
    forged_npz,
    has_loaded,
    npy_header,
    npz_voice,
    python,
    references,
    run,
    speech,
    usage_error,
    wait_for,
)
from nanobark import Bark, save_voice
from nanobark.cli.speak import parse_speak, speak


@pytest.fixture
def voice_file(tmp_path):
    full = {
        "semantic_prompt": np.arange(20) % 10_000,
        "coarse_prompt": np.zeros((2, 30), np.int64),
        "fine_prompt": np.zeros((8, 30), np.int64),
    }
    return save_voice(tmp_path / "me", *full.values())  # -> me.npz


# ---- arguments: exit 2 before anything is loaded


@pytest.mark.parametrize(
    "args, said",
    [
        (
            ["--voice", "v2/en_speaker_66"],
            "unknown voice preset 'v2/en_speaker_66'; close names: v2/en_speaker_6",
        ),  # was exit 1, after loading
        (["--voice", "missing.npz"], "missing.npz not found"),
        (["--model", "no/such/place"], "no such folder, and not a Hub id"),
        (["--seed", "-1"], "--seed must be an integer from 0 to 2\\*\\*63 - 1"),  # was a crash mid-run
        (["--seed", str(2**64)], "--seed must be an integer from 0 to 2\\*\\*63 - 1"),
        (["--text-temp", "nan"], "--text-temp must be a finite number"),
        (["--fine-temp", "1e-39"], "--fine-temp 1e-39 is too small .* or --top-k 1"),  # was exit 1, after loading
        (["--silence", "1e9", "--long"], "--silence must be a number of seconds from 0 to 60"),
        (["--int8", "--dtype", "float16"], "--int8 is for CPU decoding in float32"),
        (["--int8", "--compile"], "--int8 does not combine with compile: .* drop one"),  # was a dynamo error mid-run
        (["--device", "cuda:0"], "torch sees no CUDA GPU; .* install a CUDA build of torch"),
        (["--device", "mps"], "has no MPS \\(Apple silicon"),
        (["--quiet", "--out", "x.aiff"], "--out must end in .wav, .flac, .ogg, .mp3"),
    ],
)
def test_argument_problems_exit_2_with_one_line_before_loading(args, said, no_loading, capsys):
    import re

    err = usage_error(["Hello", *args], capsys)
    assert err.startswith("nanobark: error: ") and re.search(said, err), err


def test_a_text_of_zero_width_characters_is_a_usage_error(no_loading, capsys):
    err = usage_error(["\u200b\u200d\u2060 \u200b", "--out", "x.wav"], capsys)  # was exit 1, after loading
    assert "only control or zero-width characters" in err


def test_a_model_folder_without_config_and_a_bad_voice_file_are_usage_errors(tmp_path, no_loading, capsys):
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in usage_error(["Hi", "--model", str(tmp_path / "empty")], capsys)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert "is not a numpy file" in usage_error(["Hi", "--voice", str(tmp_path / "bad.npz")], capsys)


def test_raw_audio_to_a_terminal_is_refused(monkeypatch, no_loading, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert "standard output, which is a terminal" in usage_error(["Hi", "--out", "-"], capsys)


def test_a_voice_file_is_found_with_or_without_npz_in_any_case(voice_file, tmp_path, converted, capsys):
    base = os.path.splitext(voice_file)[0]
    for given in (voice_file, base):
        args = parse_speak(["Hi", "--voice", given, "--model", converted, "--quiet", "--out", "-"])
        assert os.path.samefile(args.voice, voice_file)
    upper = tmp_path / "LOUD.NPZ"
    os.rename(voice_file, upper)
    args = parse_speak(["Hi", "--voice", str(tmp_path / "LOUD"), "--model", converted, "--out", "-"])
    assert os.path.samefile(args.voice, upper)


def test_a_recording_as_voice_is_read_once_before_loading(converted, tmp_path, capsys):
    recording = str(tmp_path / "me.wav")
    sf.write(recording, np.random.default_rng(0).uniform(-0.3, 0.3, 24_000 * 6).astype(np.float32), 24_000)
    args = parse_speak(["Hi", "--voice", recording, "--model", converted, "--out", "-"])
    wav24, wav16 = args.voice  # the clip clone_voice takes, read now: a bad recording is a usage error
    assert len(wav24) == 24_000 * 6 and len(wav16) == 16_000 * 6
    sf.write(recording, np.zeros(24_000 * 6, np.float32), 24_000)
    assert "silent" in usage_error(["Hi", "--voice", recording, "--model", converted, "--out", "-"], capsys)


def test_speed_options_reach_the_model_and_cpu_notes_are_printed(converted, tmp_path, monkeypatch, capsys):
    seen = {}

    class Loaded(Exception):
        pass

    def capture(name, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(Bark, "from_pretrained", capture)
    out = str(tmp_path / "x.wav")
    with pytest.raises(Loaded):
        speak(["Hi", "--model", converted, "--device", "cpu", "--int8", "--out", out])
    assert seen["int8"] is True and seen["compile"] is False and seen["device"] == "cpu"
    with pytest.raises(Loaded):
        speak(["Hi", "--model", converted, "--device", "cpu", "--compile", "--out", out])
    assert seen["int8"] is False and seen["compile"] is True
    with pytest.raises(Loaded):
        speak(["Hi", "--model", converted, "--device", "cpu", "--dtype", "float16", "--offload", "--out", out])
    err = capsys.readouterr().err
    assert "float16 on the CPU is about 14x slower" in err and "--int8 is the CPU's fast option" in err
    assert "on the CPU it does nothing" in err


@pytest.mark.parametrize("command", ["voices", "clone", "convert", "synthesize", "prepare"])
def test_every_command_s_help_shows_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0 and "exit codes:" in capsys.readouterr().out


def test_help_shows_defaults_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for said in (
        "(default: 0.7)",
        "(default: suno/bark-small)",
        "exit codes:",
        "130  stopped by Ctrl-C",
        "nanobark voices",
        "nanobark convert SRC OUT",
        "--int8",
        "HF_HUB_OFFLINE=1",
    ):
        assert said in out, said


def test_argparse_prints_the_defaults_but_not_off(capsys):
    with pytest.raises(SystemExit):
        cli.main(["synthesize", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "of its id (default: 0)" in out and "(default: 8)" in out  # 0 is a default, not "off"
    assert "(default: None)" not in out and "(default: False)" not in out


# ---- voices


def test_voices_lists_suno_presets_by_language(capsys):
    references()
    from bark.generation import ALLOWED_PROMPTS, SUPPORTED_LANGS

    assert cli.main(["voices"]) == 0
    out = capsys.readouterr().out
    listed = {w for line in out.splitlines() if line.startswith("  ") for w in line.split()}
    assert listed == {p.replace(os.sep, "/") for p in ALLOWED_PROMPTS}  # Suno's own list, 261 names
    for name, code in SUPPORTED_LANGS:  # the 13 languages, named
        assert f"{name} ({code}):" in out
    assert cli.main(["voices", "--language", "fr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("French (fr):") and "v2/fr_speaker_0" in out and "en_speaker" not in out


def test_voices_of_a_local_model_come_from_its_index(converted, tmp_path, capsys):
    assert cli.main(["voices", "--model", converted]) == 0
    out = capsys.readouterr().out
    assert "English (en):" in out and "v2/en_speaker_6" in out and "announcer" in out
    (tmp_path / "config.json").write_text("{}")
    err = usage_error(["voices", "--model", str(tmp_path)], capsys)
    assert "has no voice presets" in err


# ---- convert


def test_convert_command(hf_snapshot, tmp_path, capsys):
    assert "not a folder" in usage_error(["convert", str(tmp_path / "none"), str(tmp_path / "out")], capsys)
    assert cli.main(["convert", hf_snapshot, str(tmp_path / "out")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["out", "out.lock"]  # and the lock file beside it
    assert (tmp_path / "out" / "config.json").is_file()


# ---- progress, and the process as a whole


@pytest.mark.slow
def test_progress_without_a_terminal_is_one_line_per_stage_and_segment(converted, tmp_path):
    """stderr to a file or pipe: plain lines, no carriage returns (they were tqdm bars that counted to 768)."""
    flags = f"--model {converted} --seed 1 --max-duration 0.2".split()
    r = run("-m", "nanobark", "Hello, my dog is cute.", *flags, "--out", str(tmp_path / "a.wav"))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert "\r" not in r.stderr and [line.split(":")[0] for line in lines] == ["semantic", "coarse", "fine"]
    assert lines[0].startswith("semantic: 10 tokens in ")  # where speech ended (0.2 s), not 768
    assert lines[2].startswith("fine: 1 windows in ")
    text = (  # two sentences of 25 and 29 tokens: two segments
        "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
        "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
    )
    stages = ["  semantic", "  coarse", "  fine"]  # each segment's stages (were not shown: a log was silent)
    r = run("-m", "nanobark", text, "--long", *flags, "--out", str(tmp_path / "b.wav"), "--continuity", "previous")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == [*stages, "segments", *stages, "segments"], lines
    assert lines[3].startswith("segments: 1 of 2 segments done in ") and "s left" in lines[3]
    assert lines[7].startswith("segments: 2 of 2")
    r = run("-m", "nanobark", text, "--long", *flags, "--out", str(tmp_path / "c.wav"))  # --continuity voice
    assert r.returncode == 0, r.stderr  # the two segments in one batch: its stages, then both done
    assert [line.split(":")[0] for line in r.stderr.splitlines()] == [*stages, "segments"], r.stderr


def test_hub_s_switch_for_download_bars_leaves_nanobark_s_own_bars(monkeypatch, capsys):
    """HF_HUB_DISABLE_PROGRESS_BARS is for downloads (tqdm came through huggingface_hub, which obeys it)."""
    from nanobark.progress import progress_bar

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    report = progress_bar("semantic", "tokens")
    report(5, 10)
    report(10, 10)
    assert "semantic: 100%" in capsys.readouterr().err


@pytest.mark.slow
def test_a_ctrl_c_while_torch_loads_exits_130_without_a_traceback(tmp_path):
    p = python("-m", "nanobark", "Hi", "--out", str(tmp_path / "x.wav"))
    # torch's libraries are mapped: the command's own handler is set (later is safe too: exit 130)
    wait_for(lambda: has_loaded(p.pid, "libtorch") or p.poll() is not None)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=HANG)[1]
    assert p.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_python_m_nanobark_speaks_and_shows_its_version(converted, tmp_path):
    r = run("-m", "nanobark", "--version")
    assert r.returncode == 0 and r.stdout.strip() == "nanobark 0.1.0"
    flags = f"--model {converted} --seed 2 --max-duration 0.1 --quiet".split()
    r = run("-m", "nanobark", "Hi there", *flags, "--out", str(tmp_path / "x.flac"))
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / "x.flac").samplerate == 24_000 and "s of audio in" in r.stdout


def test_an_error_without_a_message_still_says_what_failed(converted, tmp_path, monkeypatch, capsys):
    def fail(*a, **k):
        raise RuntimeError()

    monkeypatch.setattr(Bark, "from_pretrained", fail)
    assert cli.main(["Hi", "--model", converted, "--out", str(tmp_path / "x.wav")]) == 1
    assert capsys.readouterr().err == "nanobark: error: RuntimeError\n"  # was an empty "error: " line


def test_messages_name_commands_an_installed_nanobark_has():
    """No string in the package points users at a checkout's files (weights_convert/, scripts/): after a plain
    pip install only `nanobark ...` and `python -m nanobark...` exist."""
    import ast

    package = os.path.join(ROOT, "nanobark")
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                tree = ast.parse(open(path, encoding="utf-8").read())
                docstrings = {
                    id(n.body[0].value)
                    for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)
                }
                for node in ast.walk(tree):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                        assert "weights_convert" not in node.value and "scripts/" not in node.value, (path, node.value)


def test_convert_never_deletes_a_folder_it_did_not_write(hf_snapshot, tmp_path, capsys):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("years of work")
    err = usage_error(["convert", hf_snapshot, str(precious)], capsys)  # before: replaced whole, exit 0
    assert "exists and is not a nanobark conversion" in err
    assert os.listdir(precious) == ["chapter1.txt"]
    assert cli.main(["convert", hf_snapshot, str(tmp_path / "ok")]) == 0  # new: fine
    assert cli.main(["convert", hf_snapshot, str(tmp_path / "ok")]) == 0  # an earlier conversion: replaced
    (tmp_path / "empty").mkdir()
    assert cli.main(["convert", hf_snapshot, str(tmp_path / "empty")]) == 0


def test_conversions_and_caches_honour_the_umask(hf_snapshot, tmp_path, monkeypatch):
    """umask 002 (a group sharing a cache): folders 775, files 664 (they were 700 and 600: mkdtemp, and
    safetensors re-creating its files 0600)."""
    from nanobark.weights.convert.folder import convert

    monkeypatch.setenv("NANOBARK_CACHE", str(tmp_path / "cache"))
    old = os.umask(0o002)
    try:
        convert(hf_snapshot, str(tmp_path / "out"))
        Bark.from_pretrained(hf_snapshot, device="cpu")  # converted into the cache
    finally:
        os.umask(old)
    (cached,) = (p for p in (tmp_path / "cache" / "local").iterdir() if p.is_dir())
    for folder in (tmp_path / "out", cached):
        assert folder.stat().st_mode & 0o777 == 0o775, folder
        for f in folder.iterdir():
            if f.is_file():
                assert f.stat().st_mode & 0o777 == 0o664, f


@pytest.mark.slow
def test_a_closed_pipe_ends_the_command_quietly(converted, tmp_path):
    """`nanobark voices | head -1`: exit 141 (as SIGPIPE would), no "error:" (it was exit 1 with an error
    line, at random, which broke `set -o pipefail` scripts); the audio stream says what happened."""
    cmd = f"{sys.executable} -m nanobark voices | true; exit ${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=HANG)
    assert r.returncode == 141 and r.stderr == "", r.stderr
    cmd = (
        f"{sys.executable} -m nanobark 'Hello there' --model {converted} --seed 1 --max-duration 0.5 --quiet "
        f"--out - | true; exit ${{PIPESTATUS[0]}}"
    )
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=HANG)
    assert r.returncode == 141 and "Traceback" not in r.stderr and "stopped reading" in r.stderr, r.stderr


def test_the_command_takes_the_largest_seed_and_refuses_one_long_form_cannot_use(converted, tmp_path, capsys):
    """--seed 2**63 - 1 speaks; with --long, segment i uses seed + i, so two segments need one seed less (found
    before any segment is made, also when they are made one by one)."""
    from nanobark.settings import MAX_SEED

    out, seed = tmp_path / "max.wav", str(MAX_SEED)
    argv = ["--model", converted, "--max-duration", "0.2", "--quiet", "--seed", seed, "--out", str(out)]
    assert cli.main(["Hello, my dog is cute", *argv]) == 0 and sf.info(out).frames > 0
    story = (  # two sentences of 25 and 29 tokens: two segments
        "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
        "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
    )
    out.unlink()
    for continuity in ("voice", "previous"):
        assert cli.main([story, "--long", "--continuity", continuity, *argv]) == 1
        assert "item i of 2 uses seed + i" in capsys.readouterr().err and not out.exists()


def test_raw_audio_to_standard_output_is_the_wav_file_s_samples_clipped_not_wrapped(tmp_path):
    """--out - and the .wav writer share one float -> int16 conversion: beyond [-1, 1] it clips (a wrap-around
    would turn 1.5 into -16384: a loud click)."""
    import io

    from nanobark.cli.speak import write_audio, write_pcm

    audio = np.array([-3.0, -1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 0.999, 1.0, 1.0001, 1.5, 3.0], np.float32)
    buffer = io.BytesIO()
    assert write_pcm([audio[:5], audio[5:]], buffer) == len(audio)  # two chunks, as --stream writes them
    pcm = np.frombuffer(buffer.getvalue(), "<i2")
    expected = [-32768, -32768, -32768, -16384, 0, 8192, 16384, 32735, 32767, 32767, 32767, 32767]
    np.testing.assert_array_equal(pcm, expected)
    for ext in (".wav", ".flac"):
        write_audio(str(tmp_path / f"a{ext}"), audio, 24_000)
        np.testing.assert_array_equal(sf.read(tmp_path / f"a{ext}", dtype="int16")[0], pcm)


def test_mp3_is_written_where_libsndfile_writes_it(converted, tmp_path, capfd):
    """Before: `--out x.mp3` was refused, though libsndfile 1.1 and later writes MP3 (and the README said
    nothing of mp3)."""
    assert sf.check_format("MP3", "MPEG_LAYER_III")  # soundfile's wheels carry a libsndfile that writes it
    out = tmp_path / "hello.mp3"
    argv = ["Hello", "--model", converted, "--seed", "1", "--max-duration", "0.2", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "mpg123" not in capfd.readouterr().err  # not read back: mpg123 prints notes of its own on fd 2
    info = sf.info(out)
    assert info.format == "MP3" and info.samplerate == 24_000 and info.frames > 0


# ---- issue 18: a write is done only when its bytes are; never write over an input

FULL_DISK_AT_AUDIO = """
import os, resource, signal, sys
import soundfile
from nanobark.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
real_write = soundfile.write

def write_on_a_full_disk(path, *args, **kwargs):  # the disk fills 1 byte before each audio file's end
    if not isinstance(path, str):  # encoded in memory (mp3): the disk fills before its bytes are written
        real_write(path, *args, **kwargs)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(path.getvalue()) - 1, resource.RLIM_INFINITY))
        return
    real_write(path, *args, **kwargs)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) - 1, resource.RLIM_INFINITY))
    try:
        real_write(path, *args, **kwargs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

soundfile.write = write_on_a_full_disk
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["flac", "ogg", "mp3"])
def test_a_full_disk_that_cuts_the_audio_short_exits_1_and_keeps_the_old_file(ext, converted, tmp_path):
    """Before: libsndfile returned without an error, and the cut file replaced the old one; exit 0."""
    out = tmp_path / f"speech.{ext}"
    out.write_bytes(b"old audio")
    argv = ["Hello, my dog is cute.", "--model", converted, "--seed", "1", "--max-duration", "0.3", "--quiet"]
    r = run("-c", FULL_DISK_AT_AUDIO, *argv, "--out", out)
    assert r.returncode == 1 and "cut short" in r.stderr and "is the disk full" in r.stderr, r.stderr
    assert out.read_bytes() == b"old audio" and os.listdir(tmp_path) == [out.name]


def recording(path):
    sf.write(path, speech(3.0, 24_000, 1), 24_000)
    return open(path, "rb").read()


@pytest.mark.parametrize("out", ["me.wav", "./me.wav", "sub/../me.wav", "link.wav", "hard.wav", None])
def test_out_that_is_the_recording_being_cloned_is_refused(out, tmp_path, monkeypatch, no_loading, capsys):
    """--voice me.wav --out me.wav (or the default --out bark.wav with --voice bark.wav, or the same file by
    another path) replaced the recording with the speech; now exit 2 before the recording is even read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    voice = "bark.wav" if out is None else "me.wav"
    before = recording(voice)
    os.symlink(voice, "link.wav")
    os.link(voice, "hard.wav")
    argv = ["Hello", "--voice", voice, "--model", "suno/bark-small", *(["--out", out] if out else [])]
    err = usage_error(argv, capsys)
    assert f"--out {out or 'bark.wav'} is the file given as --voice {voice}" in err and "another --out" in err
    assert open(voice, "rb").read() == before


def test_out_that_is_the_text_file_is_refused(tmp_path, monkeypatch, no_loading, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "story.wav").write_text("Hello, my dog is cute.")
    err = usage_error(["--file", "story.wav", "--model", "suno/bark-small", "--out", "./story.wav"], capsys)
    assert "is the file given as --file story.wav" in err and (tmp_path / "story.wav").read_text().startswith("Hello")


@pytest.mark.parametrize("out", ["link.npz", "hard.npz", "sub/../link.npz"])
def test_clone_out_that_is_the_recording_is_refused(out, tmp_path, monkeypatch, capsys):
    """`nanobark clone REC --out REC` by another path (a symlink or a hard link named .npz): the voice replaced
    the recording; now exit 2 before it is read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    before = recording("me.wav")
    os.symlink("me.wav", "link.npz")
    os.link("me.wav", "hard.npz")

    def cloning(*args, **kwargs):
        raise AssertionError("cloned")

    monkeypatch.setattr("nanobark.cloning.clone_voice", cloning)
    err = usage_error(["clone", "me.wav", "--out", out, "--model", "suno/bark-small"], capsys)
    assert f"--out {out} is the file given as recording me.wav" in err
    assert open("me.wav", "rb").read() == before


# ---- issue 18, from a new user's walkthrough: --threads, and one prefix for every error


def test_threads_sets_torchs_cpu_threads_and_zero_is_a_usage_error(converted, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        parse_speak(["Hi", "--model", converted, "--threads", "1", "--out", "x.wav"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "--threads must be at least 1, got 0" in usage_error(["Hi", "--threads", "0"], capsys)


def test_a_runtime_error_says_nanobark_error_as_a_usage_error_does(converted, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["convert", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("nanobark: error: ")


@pytest.mark.parametrize("fault, code", [(OSError("disk full"), 1), (KeyboardInterrupt(), 130)])
def test_failed_write_keeps_the_old_output(fault, code, converted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "speech.wav"
    out.write_bytes(b"old audio")
    monkeypatch.setattr(Bark, "generate", lambda self, *a, **k: np.full(3200, 0.25, np.float32))  # not under test
    real_write = sf.write

    def write_half_then_fail(path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"RIFF and half a header")
        raise fault

    monkeypatch.setattr(sf, "write", write_half_then_fail)
    assert cli.main(["Hello", "--model", converted, "--out", str(out), "--quiet"]) == code
    assert out.read_bytes() == b"old audio" and os.listdir(tmp_path) == ["speech.wav"]
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setattr(sf, "write", real_write)  # and a run that succeeds replaces it, at the end
    assert cli.main(["Hello", "--model", converted, "--out", str(out), "--quiet"]) == 0
    assert sf.read(out)[0].shape == (3200,) and os.listdir(tmp_path) == ["speech.wav"]


@pytest.mark.parametrize(
    "args, said",
    [
        (["--text-temp", "0"], "--text-temp must be > 0"),
        (["--fine-temp", "-1"], "--fine-temp must be > 0"),
        (["--top-p", "1.5"], r"--top-p must be in \(0, 1\]"),
        (["--top-k", "0"], "--top-k must be an integer >= 1"),
        (["--dtype", "float64"], "invalid choice: 'float64'"),
        (["--seed", "x"], "invalid int value: 'x'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--device", "mps"], r"has no MPS \(Apple silicon"),  # was exit 1, after loading
        (["--device", "gpu"], "'gpu' is not a device"),
    ],
)
def test_usage_errors_exit_2_with_one_message(args, said, capsys):
    with pytest.raises(SystemExit) as e:
        parse_speak(["Hello", "--model", "suno/bark-small", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert ": error: " in err.splitlines()[-1] and re.search(said, err.splitlines()[-1])  # after the usage lines


def test_an_endless_text_file_is_a_usage_error_not_a_full_memory(capsys):
    with pytest.raises(SystemExit) as e:
        parse_speak(["--file", "/dev/zero"])  # before: read until memory ran out
    assert e.value.code == 2 and "--file /dev/zero is not a regular file" in capsys.readouterr().err


def test_unreadable_text_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name, said in [("latin1.txt", "can't decode byte 0xe9"), ("missing.txt", "No such file")]:
        with pytest.raises(SystemExit) as e:
            parse_speak(["--file", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "cannot read the text" in err and said in err and "Traceback" not in err


@pytest.mark.slow
def test_failures_exit_with_one_line_and_a_traceback_only_with_debug(converted, tmp_path):
    marker = tmp_path / "created_by_pickle"
    trap = np.array([MakesFile(marker)], dtype=object)
    np.save(tmp_path / "payload.npy", trap, allow_pickle=True)
    np.load(tmp_path / "payload.npy", allow_pickle=True)
    assert marker.exists()  # the payload is live
    marker.unlink()
    evil = npz_voice(tmp_path / "evil.npz", semantic_prompt=trap)
    base = [GENERATE, "Hello", "--model", converted, "--out", tmp_path / "x.wav", "--quiet"]
    damaged = shutil.copytree(converted, tmp_path / "damaged")  # a runtime failure: found only when loading
    with open(damaged / "coarse.safetensors", "r+b") as f:
        f.truncate(1000)
    procs = {"plain": python(*base, "--voice", evil), "debug": python(*base[:3], damaged, *base[4:], "--debug")}
    errs = {k: p.communicate(timeout=HANG)[1] for k, p in procs.items()}
    # a voice file is an argument: checked before the model loads, a usage error (it was exit 1, after loading)
    assert [p.returncode for p in procs.values()] == [2, 1], errs
    assert errs["plain"].startswith(f"nanobark: error: {evil} holds pickled data") and "never loaded" in errs["plain"]
    assert "Traceback" not in errs["plain"] and len(errs["plain"].strip().splitlines()) == 1
    assert "Traceback" in errs["debug"] and "CheckpointError: " in errs["debug"] and "coarse" in errs["debug"]
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == ["damaged", "evil.npz", "payload.npy"]


# ---- issue 18: --file is read with the one bounded reader (files.read_bounded)


def test_an_endless_or_oversized_text_file_is_one_usage_line(tmp_path, capsys):
    """--file /dev/zero, a FIFO (before: open() hung with no writer), a link to /dev/urandom, a 5 MB file."""
    from helpers import endless_inputs

    for kind, path in endless_inputs(str(tmp_path), "story.txt", oversized=5_000_000):
        err = usage_error(["--file", path, "--model", "suno/bark-small"], capsys)
        said = "larger than 3.81 MB" if kind == "oversized" else "not a regular file"
        assert said in err and path in err, (kind, err)


def test_a_text_file_of_a_million_four_byte_characters_is_read_whole(tmp_path):
    """The byte limit is 4 bytes a character: the character limit still decides."""
    from nanobark.tokenizer import MAX_TEXT_CHARS

    (tmp_path / "wide.txt").write_text("\U0001f600" * MAX_TEXT_CHARS, encoding="utf-8")
    args = parse_speak(["--file", str(tmp_path / "wide.txt"), "--model", "suno/bark-small"])
    assert len(args.text) == MAX_TEXT_CHARS


def test_a_recording_that_would_decode_to_gigabytes_is_a_usage_error_before_loading(tmp_path, no_loading, capsys):
    """--voice with a sparse 240 MHz or 1024-channel WAV: exit 2, one line, from the header (issue 18, S5)."""
    from helpers import sparse_wav

    for rate, channels, frames, said in [
        (240_000_000, 1, 288_000_000, "sample rate of 240,000,000 Hz, over 384,000"),
        (48_000, 1024, 1_440_000, "of 1024 channels, over 92,160,000 samples"),
    ]:
        voice = sparse_wav(tmp_path / f"{rate}-{channels}.wav", rate, channels, frames)
        argv = ["Hello", "--voice", voice, "--model", "suno/bark-small", "--out", str(tmp_path / "o.wav")]
        err = usage_error(argv, capsys)
        assert said in err and voice in err, err


def test_a_voice_file_with_a_forged_header_is_a_usage_error_before_loading(tmp_path, no_loading, capsys):
    huge = forged_npz(
        tmp_path / "huge.npz", npy_header("{'descr': '<i8', 'fortran_order': False, 'shape': (68719476736,)}")
    )
    assert f"{huge} has an array header declaring" in usage_error(["Hi", "--voice", huge], capsys)  # was exit 1
    code = forged_npz(tmp_path / "code.npz", npy_header("{'descr': __import__("))
    assert f"{code} has an array header that cannot be parsed" in usage_error(["Hi", "--voice", code], capsys)


def test_with_standard_error_closed_nothing_but_audio_goes_to_standard_output(converted):
    """Before: print(file=None) wrote to stdout: with `2>&-` the progress bar's sys.stderr.isatty() crashed
    (exit 1, the error in the audio pipe), and --quiet appended the status line to the PCM stream."""
    cmd = ["-m", "nanobark", "Hello", "--model", converted, "--seed", "1", "--max-duration", "0.05", "--out", "-"]
    r = run(*cmd, stderr=subprocess.DEVNULL, text=False, preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and len(r.stdout) % 2 == 0, r.stdout[-200:]
    assert b"audio in" not in r.stdout and b"error" not in r.stdout


def test_an_out_name_over_255_bytes_is_a_usage_error_before_loading(converted, tmp_path, no_loading, capsys):
    """(A 255-byte name is written: test_files checks that write_atomic's temporary name fits.)"""
    out = str(tmp_path / ("x" * 252 + ".wav"))  # 256 bytes: was ENAMETOOLONG, exit 1, after generating
    err = usage_error(["Hi", "--model", converted, "--out", out], capsys)
    assert "its name is 256 bytes, over the 255 a name may have" in err


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["voices"], ["Hello", "--out", "-"], ["Hello", "--out", "x.wav"], ["--help"]])
def test_with_standard_output_closed_the_command_says_so_and_exits_2(argv, tmp_path):
    """Before: `nanobark voices >&-` exited 0 having printed nothing (print(file=None) drops it), and
    `--out -` said standard output 'is a terminal here'."""
    r = run("-m", "nanobark", *argv, cwd=tmp_path, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(1))
    assert r.returncode == 2 and r.stderr.startswith("nanobark: error: standard output is closed"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_names_that_are_not_utf8_are_usage_errors_before_loading(tmp_path, no_loading, capsys):
    """soundfile encodes names as strict UTF-8: --out with a 0xff byte failed after generating (exit 1), a
    recording named with 0xfe said "'utf-8' codec can't encode character '\\udcfe'"."""
    out, voice = str(tmp_path / os.fsdecode(b"\xff.wav")), str(tmp_path / os.fsdecode(b"\xfe.wav"))
    recording(os.fsencode(voice))  # soundfile takes the name as bytes
    err = usage_error(["Hi", "--out", out], capsys)
    assert "\\udcff.wav' is not valid UTF-8 (byte 0xff); rename it" in err, err
    err = usage_error(["Hi", "--voice", voice, "--out", str(tmp_path / "ok.wav")], capsys)
    assert "--voice " in err and "is not valid UTF-8 (byte 0xfe)" in err, err
    err = usage_error(["clone", voice, "--out", str(tmp_path / "v.npz")], capsys)
    assert "recording " in err and "is not valid UTF-8 (byte 0xfe)" in err, err
    err = usage_error(["clone", str(tmp_path / "ok.wav"), "--out", str(tmp_path / os.fsdecode(b"\xfd.npz"))], capsys)
    assert "is not valid UTF-8 (byte 0xfd)" in err, err
    manifest = tmp_path / "m.txt"
    manifest.write_text("Hello.\n")
    err = usage_error(["synthesize", str(manifest), "--out-dir", str(tmp_path / os.fsdecode(b"o\xff"))], capsys)
    assert "--out-dir " in err and "is not valid UTF-8 (byte 0xff)" in err, err


# ---- issue 18 (walkthrough): progress that says what it does, in a log too


def test_a_slow_bar_shows_its_rate_as_units_per_second():
    """tqdm's own rate below 1 a second read "3.55s/ windows"."""
    from tqdm import tqdm

    from nanobark.progress import BAR

    line = tqdm.format_meter(1, 10, 3.55, prefix="fine", unit=" windows", bar_format=BAR, ncols=80)
    assert "0.28 windows/s" in line and "s/ windows" not in line, line


def test_a_stage_without_a_terminal_says_it_is_running_once_a_minute(monkeypatch, capsys):
    import nanobark.progress as progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    report = progress.progress_bar("semantic", "tokens", transient=True)  # stderr is not a terminal here
    for done in range(1, 601):  # 600 tokens, 0.25 s each
        now[0] += 0.25
        report(done, 768)
    report(600, 600)
    assert capsys.readouterr().err.splitlines() == [
        "  semantic: 240 tokens so far, 60 s",  # was silent until the end (and a transient stage: always)
        "  semantic: 480 tokens so far, 120 s",
        "  semantic: 600 tokens in 150.0 s",
    ]


def test_the_semantic_bar_counts_to_the_max_duration_cap(bark, monkeypatch):
    """Before: the total stayed 768 with --max-duration 0.2 (10 tokens), so the time left was 70x too long."""
    import nanobark.bark as bark_module

    totals = []
    monkeypatch.setattr(bark_module, "progress_bar", lambda desc, unit, transient=False: lambda d, t: totals.append(t))
    bark.text_to_semantic("Hello, my dog is cute.", seed=1, max_duration=0.2, progress=True, allow_early_stop=False)
    assert totals == [10] * 11, totals  # 10 tokens pass 0.2 s at 49.9 a second (then the end, reported again)


def test_a_ctrl_c_erases_the_bar_before_its_message(monkeypatch, capsys):
    """Before: the bar a Ctrl-C stopped was drawn again below "interrupted" when it was garbage-collected."""
    import gc

    import nanobark.cli.speak as speak_module
    from nanobark.progress import progress_bar

    def interrupted(argv):
        report = progress_bar("semantic", "tokens")  # alive in the traceback's frame while the message prints
        report(5, 768)
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(speak_module, "speak", interrupted)
    assert cli.main(["Hello"]) == 130
    gc.collect()
    err = capsys.readouterr().err
    assert "semantic:" in err and err.endswith("interrupted; nothing was written\n"), repr(err[-300:])


def test_standard_input_is_read_bounded_as_a_file_is(monkeypatch, capsys):
    """Standard input, read by the one bounded reader (files.read_stream): /dev/zero on stdin was read up to
    1,000,001 characters by a cap of the command's own."""
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a" * 5_000_000)))
    assert "standard input is larger than 3.81 MB" in usage_error(["--model", "suno/bark-small"], capsys)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Héllo\xff".encode() + b"\xff")))
    assert "cannot read the text: 'utf-8' codec" in usage_error(["-", "--model", "suno/bark-small"], capsys)


@pytest.mark.slow
def test_sigterm_while_reading_an_endless_standard_input_ends_the_command_at_once(tmp_path):
    """A FIFO whose writer never closes it, on standard input: the read waits for ever; SIGTERM ends it
    with 143 and one line, in the middle of a read."""
    import fcntl
    import termios

    fifo = str(tmp_path / "endless")
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # held open, never closed while the command reads: no end of file
    try:
        with open(fifo, "rb") as stdin:
            p = python("-m", "nanobark", "--model", "suno/bark-small", "--out", str(tmp_path / "x.wav"), stdin=stdin)
        os.write(writer, b"Hello " * 10_000)  # some text, then nothing more

        def unread():
            return fcntl.ioctl(writer, termios.FIONREAD, b"\0\0\0\0") != b"\0\0\0\0"

        wait_for(lambda: not unread() or p.poll() is not None)  # the command has read it: it waits for more
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=HANG)[1]
    finally:
        os.close(writer)
    assert p.returncode == 143 and err == "interrupted; nothing was written\n", err
    assert os.listdir(tmp_path) == ["endless"]


@pytest.mark.parametrize("damage", ["device", "not json"])
def test_a_model_s_damaged_preset_index_is_a_runtime_failure_not_a_usage_error(
    damage, converted, voice_file, tmp_path, no_loading, capsys
):
    """Before: --voice v2/en_speaker_6 with the model's speaker_embeddings_path.json a link to /dev/zero said
    "no speaker_embeddings_path.json" and exited 2, as if the argument were wrong; not JSON: exit 2 too."""
    model = tmp_path / "m"
    shutil.copytree(converted, model, symlinks=True)
    index = model / "speaker_embeddings_path.json"
    index.unlink()
    if damage == "device":
        index.symlink_to("/dev/zero")
    else:
        index.write_text("{not json")
    said = "is not a regular file" if damage == "device" else "cannot be read as JSON"
    for argv in (["Hi", "--voice", "v2/en_speaker_6", "--out", str(tmp_path / "x.wav")], ["voices"]):
        assert cli.main([*argv, "--model", str(model)]) == 1
        err = capsys.readouterr().err
        assert said in err and str(index) in err and len(err.strip().splitlines()) == 1, err
    args = parse_speak(["Hi", "--voice", str(voice_file), "--model", str(model), "--out", "x.wav"])
    assert args.voice == str(voice_file)  # a voice file needs no index
