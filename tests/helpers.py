"""Helpers the tests import (`from helpers import ...`); the fixtures are in conftest.py.

Suno's `bark` imports `encodec`, which imports `torchaudio` at import time; torchaudio does not load beside
the CPU build of torch. transformers must be imported first (it probes torchaudio itself), then an empty
module stands in for torchaudio so `import bark` succeeds (`references()` does both). nanobark never needs
torchaudio. The tests of the models, the sampler, the tokenizer's prompt layout and the package structure
import no reference at module level, so they run with torch alone (the others are skipped there).
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import nanobark.cli as cli
import weights_convert.references as refs
from weights_convert.random_init import PRESETS_USED, VOCAB, write_hub_extras  # noqa: F401  (for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATE = os.path.join(ROOT, "scripts", "generate.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}  # subprocesses share two cores
HANG = 1200  # seconds: bounds a hang, never a speed (a loaded 2-core machine is many times slower than idle)


def references(module_level=False):
    """Import transformers, then stand in for torchaudio, so Suno's `bark` and `encodec` import too.

    Without the test extra installed, the calling test (or module) is skipped; CI sets
    NANOBARK_REQUIRE_REFERENCES=1, which makes that an error instead.
    """
    try:
        refs.import_references()
    except ImportError as e:
        if os.environ.get("NANOBARK_REQUIRE_REFERENCES"):
            raise
        pytest.skip(
            f"a reference implementation is not installed ({e}); pip install -e '.[test]'",
            allow_module_level=module_level,
        )


# ---- the files the Hub holds (the tiny random model is weights_convert.random_init's) ---------------------


def write_hf_cache(snapshot, hf_home, repo_id="suno/bark-small", leave_out=()):
    """Lay a snapshot folder into huggingface_hub's cache under hf_home, as transformers leaves it.

    After BarkModel.from_pretrained("suno/bark-small") and AutoProcessor.from_pretrained, the cache holds
    hub/models--suno--bark-small/{blobs/<hash>, refs/main, snapshots/<commit>/<file> -> ../../blobs/<hash>},
    with the weights as pytorch_model.bin: bark-small's model.safetensors is only on refs/pr/5. Files whose
    path starts with one of `leave_out` are not cached (e.g. a preset never used). Returns hf_home.
    """
    from safetensors.torch import load_file

    repo = os.path.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)  # no newline: huggingface_hub reads the file as it is

    def add(rel, write):
        tmp = os.path.join(repo, "blobs", "incoming")
        write(tmp)
        with open(tmp, "rb") as f:
            blob = os.path.join(repo, "blobs", hashlib.sha256(f.read()).hexdigest())
        os.replace(tmp, blob)
        link = os.path.join(repo, "snapshots", commit, *rel.split("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)

    for root, _, names in os.walk(snapshot):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), snapshot).replace(os.sep, "/")
            if rel != "model.safetensors" and not rel.startswith(tuple(leave_out)):
                add(rel, lambda tmp: shutil.copyfile(os.path.join(root, name), tmp))
    if os.path.exists(os.path.join(snapshot, "model.safetensors")):
        state = load_file(os.path.join(snapshot, "model.safetensors"))
        add("pytorch_model.bin", lambda tmp: torch.save(state, tmp))
    return str(hf_home)


def suno_copy(model, fine=False):
    """Suno's GPT / FineGPT holding the very tensors of a nanobark model (skipped without the references)."""
    references()
    return refs.suno_copy(model, fine)


def speech(seconds=6.0, rate=44_100, channels=2, seed=0):
    """A voiced-sounding test signal: a wandering pitch with harmonics, and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    mono = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(len(t))
    return np.stack([mono, 0.8 * mono], axis=1)[:, :channels].astype(np.float32)


def randomize_codec(model):
    """Random weight-norm gains, biases and codebooks for an EnCodec reference (transformers' or the encodec
    package's): a fresh one has g = ||v|| (so w = v) and all-zero codebooks, which would hide a dropped gain,
    a broken decode or a broken nearest-codeword search. (randomize_ gives latents ten times smaller than the
    codewords, so that every frame would pick the same few codes.)"""
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("codebook.embed", "original0", "weight_g")):
                t.copy_(torch.rand_like(t) * 2 + 0.1 if "embed" not in name else torch.randn_like(t))
            elif name.endswith("bias"):
                t.copy_(torch.randn_like(t) * 0.1)
    return model


def legacy_weight_norm_names(sd):
    """Rename to the Hub file's weight-norm names (weight_g, weight_v), as older transformers saved them."""
    return {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in sd.items()
    }


# ---- hostile files ----------------------------------------------------------------------------------------


class MakesFile:
    """Unpickling this creates `path`: the stand-in for the code a hostile pickle would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def read_safetensors_parts(path):
    """A safetensors file -> (its JSON header, the tensor bytes after it)."""
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_safetensors_parts(path, header, body):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + body)


def last_tensor(header):
    return max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])


def truncate_in_last_tensor(src, dst):
    """src copied to dst cut off half-way through its last tensor: -> that tensor's name."""
    header, body = read_safetensors_parts(src)
    name = last_tensor(header)
    begin, end = header[name]["data_offsets"]
    write_safetensors_parts(dst, header, body[: (begin + end) // 2])
    return name


def lie_about_shape(src, dst):
    """src copied to dst with a header that doubles its last tensor's shape: -> that tensor's name."""
    header, body = read_safetensors_parts(src)
    name = last_tensor(header)
    header[name]["shape"] = [2 * d for d in header[name]["shape"]]
    write_safetensors_parts(dst, header, body)
    return name


def npz_voice(path, **changes):
    """Suno's v2/en_speaker_6 saved as an .npz file at `path`, with `changes` to its arrays (None drops one)."""
    arrays = {**refs.suno_voice("v2/en_speaker_6"), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


# ---- processes ---------------------------------------------------------------------------------------------


def python(*args, env=None, **kw):
    """`python ARGS...` (a script, -m or -c and their arguments) as a running process in the checkout, with
    text pipes, one thread and the checkout first on its path (ENV): -> subprocess.Popen."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("cwd", ROOT)
    kw.setdefault("text", True)
    return subprocess.Popen([sys.executable, *map(str, args)], env=ENV if env is None else env, **kw)


def run(*args, input=None, **kw):
    """`python ARGS...` run to its end (killed after HANG seconds): -> subprocess.CompletedProcess."""
    p = python(*args, stdin=subprocess.PIPE if input is not None else None, **kw)
    try:
        out, err = p.communicate(input, timeout=HANG)
    finally:
        p.kill()
        p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def wait_for(condition, timeout=HANG):
    """Poll condition() until it is true; a TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def has_loaded(pid, library):
    """Whether process `pid` has mapped a shared library whose path holds `library` (Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return library in f.read()
    except OSError:  # the process has ended
        return False


def leftovers(folder, prefix="."):
    """The names in `folder` that start with `prefix`: what a killed or failed write may leave behind."""
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix))


def usage_error(argv, capsys):
    """argv -> the one line a usage error prints (asserting exit 2, one line, no traceback)."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def endless_inputs(folder, name, oversized):
    """Paths named `name` that a reader bounded by the name (not the cost) reads without end, or far too much:
    a symlink to /dev/zero, a FIFO (no writer: opening it blocks), a symlink to /dev/urandom, and a sparse
    regular file of `oversized` bytes (nothing on disk). -> [(what, path)]."""
    out = []
    for kind in ("zero", "fifo", "urandom", "oversized"):
        path = os.path.join(folder, kind, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "oversized":
            with open(path, "wb") as f:
                f.truncate(oversized)
        else:
            os.symlink(f"/dev/{kind}", path)
        out.append((kind, path))
    return out


def sparse_wav(path, rate, channels, frames):
    """An 8-bit PCM WAV of `frames` x `channels` samples at `rate` Hz that costs nothing on disk (a sparse file),
    as a recording that asks for gigabytes of float32 once decoded; its last sample is not silence."""
    n = frames * channels
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * channels) & 0xFFFFFFFF, channels, 8)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", (36 + n) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + fmt)
        f.write(b"data" + struct.pack("<I", n))
        f.seek(44 + n - 1)
        f.write(b"\x90")
    return str(path)


def forged_npz(path, header):
    """v2/en_speaker_6 as an .npz whose fine_prompt member has the raw .npy `header` (bytes) and 64 data bytes."""
    npz_voice(path)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["fine_prompt.npy"] = header + bytes(64)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def npy_header(text):
    """A version 1.0 .npy header holding `text`, padded as numpy pads it."""
    text = text.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")
