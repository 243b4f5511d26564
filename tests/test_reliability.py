"""Faults only whole processes show: conversions killed part-way or run by two processes at once, a full disk,
signals mid-generation, the same bytes from two processes. The tests of each module have the rest;
docs/reliability.md lists them all."""

import os
import signal
import subprocess

import pytest
import soundfile
from filelock import FileLock

from helpers import ENV, GENERATE, HANG, ROOT, leftovers, python, run, wait_for
from nanobark.weights.checkpoint import load_stage, read_meta
from nanobark.weights.convert.folder import convert
from nanobark.weights.hub import convert_once, is_current

STAGES = ("semantic", "coarse", "fine", "codec")


def speak(model, out, seed, *args, **kw):
    """scripts/generate.py speaking one sentence with `model` into `out`, as a running process."""
    return python(GENERATE, "Hello, my dog is cute", "--model", model, "--out", out, "--seed", seed, *args, **kw)


# ---- conversions killed part-way, and run twice at once


KILLED_CONVERSION = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import safetensors.torch
real_save, calls = safetensors.torch.save_file, []

def save_then_hang(state, path, metadata=None):  # the first file whole, the second cut off: then hang until killed
    calls.append(path)
    if len(calls) == 1:
        return real_save(state, path, metadata)
    with open(path, "wb") as f:
        f.write(b"the first bytes of a file")
    open(sys.argv[4], "w").close()
    time.sleep(600)

safetensors.torch.save_file = save_then_hang
from nanobark.weights.hub import convert_once
convert_once(sys.argv[2], sys.argv[3])
"""


FULL_DISK_AT_CONFIG = """
import json, resource, signal, sys
sys.path.insert(0, sys.argv[1])
import nanobark.weights.convert.folder as folder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
real_dumps = json.dumps

def dumps_then_disk_full(*a, **k):  # called for config.json only, the last file written
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.RLIM_INFINITY))
    return real_dumps(*a, **k)

folder.json.dumps = dumps_then_disk_full
try:
    folder.convert(sys.argv[2], sys.argv[3])
    print("converted")
except OSError as e:
    print("OSError", e.errno)
"""


@pytest.mark.slow
def test_a_full_disk_at_the_last_write_fails_and_leaves_nothing_finished(hf_snapshot, tmp_path):
    out = tmp_path / "out"
    p = run("-c", FULL_DISK_AT_CONFIG, ROOT, hf_snapshot, out)
    assert p.stdout.strip() == "OSError 27", p.stdout + p.stderr[-2000:]  # EFBIG, not "converted"
    assert not out.exists() and os.listdir(tmp_path) == ["out.lock"]  # nothing finished, no temp folder
    assert is_current(convert(hf_snapshot, str(out)))  # and the next run recovers


@pytest.mark.slow
def test_killed_conversion_is_redone_and_its_leftovers_removed(hf_snapshot, tmp_path):
    cache, started = tmp_path / "cache", tmp_path / "started"
    target = cache / "model"
    p = python("-c", KILLED_CONVERSION, ROOT, hf_snapshot, target, started)
    try:
        wait_for(lambda: started.exists() or p.poll() is not None)
        assert p.poll() is None, p.communicate()
    finally:
        p.kill()  # SIGKILL: no cleanup runs
        p.wait()
    assert not os.path.exists(target) and read_meta(str(target)) is None
    killed = leftovers(cache, ".converting-")
    assert len(killed) == 1 and "semantic.safetensors" in os.listdir(cache / killed[0])  # the fault left junk...
    live = cache / ".converting-other.0123456789ab"  # and another folder is being converted right now
    live.mkdir()
    with FileLock(cache / "other.lock"):
        assert convert_once(hf_snapshot, str(target)) == str(target)
        # ...which the next conversion removes, sparing the live one
        assert leftovers(cache, ".converting-") == [live.name]
    assert read_meta(str(target)) is not None
    for stage in STAGES:
        load_stage(str(target), stage)


CONCURRENT_CONVERSION = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import safetensors.torch
real_save = safetensors.torch.save_file
barrier = sys.argv[4]

def save_together(state, path, metadata=None):  # a writer waits until the other process is converting too
    open(os.path.join(barrier, f"saved-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 600
    while sum(n.startswith("started") for n in os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    real_save(state, path, metadata)

safetensors.torch.save_file = save_together
from nanobark.weights.hub import convert_once
open(os.path.join(barrier, f"started-{os.getpid()}"), "w").close()
print(convert_once(sys.argv[2], sys.argv[3]))
"""


@pytest.mark.slow
def test_two_processes_converting_at_once_leave_one_valid_copy(hf_snapshot, converted, tmp_path):
    """The second one waits for the first one's lock, then takes its copy: one writer, no mix."""
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    target = cache / "model"
    procs = [python("-c", CONCURRENT_CONVERSION, ROOT, hf_snapshot, target, barrier) for _ in range(2)]
    results = [p.communicate(timeout=HANG) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert [out.strip() for out, _ in results] == [str(target)] * 2
    writers = {n.split("-")[1] for n in os.listdir(barrier) if n.startswith("saved")}
    assert len(writers) == 1 and len(os.listdir(barrier)) == 3  # both ran; only one converted
    assert sorted(os.listdir(cache)) == ["model", "model.lock"]  # one copy, no temporary folders
    for name in [f"{s}.safetensors" for s in STAGES] + ["config.json"]:
        assert open(target / name, "rb").read() == open(os.path.join(converted, name), "rb").read(), name


# ---- signals


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_sigterm_or_sighup_mid_generation_stops_cleanly(converted, tmp_path, sig):
    out_dir, err = tmp_path / "out", tmp_path / "stderr.txt"
    out_dir.mkdir()
    out = out_dir / "speech.wav"
    out.write_bytes(b"old audio")
    bars_on = {k: v for k, v in ENV.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    with open(err, "w") as f:  # no --max-duration: minutes of generation, unless stopped
        p = speak(converted, out, 0, stdout=subprocess.DEVNULL, stderr=f, env=bars_on)
    try:
        wait_for(lambda: "semantic" in err.read_text() or p.poll() is not None)  # its progress bar: generating
        assert p.poll() is None and out.read_bytes() == b"old audio"
        p.send_signal(getattr(signal, sig))
        assert p.wait(timeout=HANG) == 128 + getattr(signal, sig)  # 130, 143, 129
    finally:
        p.kill()
    text = err.read_text()
    assert "interrupted; nothing was written" in text and "Traceback" not in text and "KeyboardInterrupt" not in text
    assert out.read_bytes() == b"old audio" and os.listdir(out_dir) == ["speech.wav"]


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_in_two_processes(converted, tmp_path):
    outs = [tmp_path / f"run{i}.wav" for i in range(2)]
    procs = [
        speak(
            converted,
            out,
            7,
            *"--voice v2/en_speaker_6 --max-duration 0.1 --quiet".split(),
            env={**ENV, "PYTHONHASHSEED": str(i)},
        )
        for i, out in enumerate(outs)
    ]
    results = [p.communicate(timeout=HANG) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    first, second = (o.read_bytes() for o in outs)
    assert first == second
    audio, _ = soundfile.read(outs[0])
    assert len(audio) > 0 and audio.std() > 0  # real audio, not silence that any seed would give


FULL_DISK_CONVERT = """
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[4]), resource.RLIM_INFINITY))
from nanobark.cli import main
sys.exit(main(["convert", sys.argv[2], sys.argv[3]]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("limit", [4096, 200_000])  # in the first stage file; later, in another one
def test_a_full_disk_anywhere_in_a_conversion_is_one_line_and_nothing_finished(limit, hf_snapshot, tmp_path):
    out = tmp_path / "out"
    r = run("-c", FULL_DISK_CONVERT, ROOT, hf_snapshot, out, str(limit))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("nanobark: error: "), r.stderr
    assert "disk" in r.stderr, r.stderr  # names the likely cause
    assert not out.exists() and os.listdir(tmp_path) == ["out.lock"]  # nothing finished, no temporary folder
