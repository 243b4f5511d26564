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
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch

import nanobark.cli as cli

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
        import transformers  # noqa: F401  (first: it probes torchaudio itself)

        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
        import bark  # noqa: F401
    except ImportError as e:
        if os.environ.get("NANOBARK_REQUIRE_REFERENCES"):
            raise
        pytest.skip(
            f"a reference implementation is not installed ({e}); pip install -e '.[test]'",
            allow_module_level=module_level,
        )


# ---- tiny random models and the files the Hub holds ------------------------------------------------------

TINY = dict(num_layers=2, num_heads=2, hidden_size=32, block_size=1024, bias=False, dropout=0.0)


def tiny_hf_config(**overrides):
    references()
    from transformers import BarkConfig, EncodecConfig

    sub = {**TINY, **overrides}
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=EncodecConfig().to_dict(),
    )


VOCAB = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(99)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~")
    + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + [
        "Hello",
        "hello",
        "my",
        "dog",
        "is",
        "cute",
        "the",
        "The",
        "a",
        "and",
        "to",
        "of",
        "laughter",
        "laughs",
        "music",
        "He",
        "She",
        "said",
        "world",
        "World",
        "café",
        "Привет",
        "мир",
        "你",
        "好",
        "世",
        "界",
        "♪",
        "é",
        "##s",
        "##ing",
        "##ed",
        "##er",
        "##ly",
        "##é",
        "##a",
        "##e",
        "##o",
        "##n",
        "##t",
        "##r",
        "##i",
        "##l",
    ]
    + [f"##{c}" for c in "bcdfghjkmpquvwxyz"]
)
VOCAB = list(dict.fromkeys(VOCAB))  # one id per token
PRESETS_USED = ("v2/en_speaker_6", "en_speaker_1", "announcer", "v2/zh_speaker_9")


def suno_prompts_dir():
    references()
    import bark

    return os.path.join(os.path.dirname(bark.__file__), "assets", "prompts")


def write_hub_extras(path, presets=PRESETS_USED):
    """The tokenizer files and a speaker_embeddings/ tree, as on the Hub, next to a saved BarkModel."""
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    table = {"repo_or_path": str(path)}
    for name in presets:
        npz = np.load(os.path.join(suno_prompts_dir(), name + ".npz"))
        table[name] = {}
        for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
            rel = f"speaker_embeddings/{name}_{key}.npy"
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            np.save(os.path.join(path, rel), npz[key])
            table[name][key] = rel
    with open(os.path.join(path, "speaker_embeddings_path.json"), "w") as f:
        json.dump(table, f)


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
    """Suno's GPT / FineGPT holding the same weights as a nanobark model."""
    references()
    from bark.model import GPT as SunoGPT
    from bark.model import GPTConfig as SunoConfig
    from bark.model_fine import FineGPT as SunoFine
    from bark.model_fine import FineGPTConfig

    from nanobark.weights.convert.gpt_keys import suno_model_args, suno_name

    c = model.config
    args = suno_model_args(c)
    ref = SunoFine(FineGPTConfig(**args)) if fine else SunoGPT(SunoConfig(**args))
    state = {suno_name(k): v for k, v in model.state_dict().items()}
    if fine:  # Suno stores the tied heads as well
        state.update({f"lm_heads.{i}.weight": model.wtes[i + 1].weight for i in range(7)})
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(".attn.bias") for k in missing)
    return ref.eval()


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
