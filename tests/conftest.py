"""Shared fixtures; the helpers the tests import are in helpers.py. The reference implementations are imported
only by the tests that compare with them (helpers.references)."""

import os

import pytest
import torch

from helpers import references, write_hf_cache
from nanobark import Bark
from weights_convert.random_init import random_bark, random_cloning_weights, write_hub_extras

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- tiny random models with the real token layout -------------------------------------------------


@pytest.fixture(scope="session")
def hf_bark():
    """A tiny random transformers BarkModel (real vocab sizes and real EnCodec 24 kHz shapes)."""
    references()
    return random_bark()  # size="tiny", seed=1234


@pytest.fixture(scope="session")
def hf_snapshot(hf_bark, tmp_path_factory):
    """What BarkModel.save_pretrained writes (model.safetensors + config.json), plus tokenizer and presets."""
    path = tmp_path_factory.mktemp("hf_snapshot")
    hf_bark.save_pretrained(path)
    write_hub_extras(str(path))
    return str(path)


@pytest.fixture(scope="session")
def hf_cache(hf_snapshot, tmp_path_factory):
    """HF_HOME holding suno/bark-small (hf_snapshot's random weights) as transformers leaves it: see write_hf_cache."""
    return write_hf_cache(hf_snapshot, str(tmp_path_factory.mktemp("hf_home")))


@pytest.fixture(scope="session")
def cloning_sources(tmp_path_factory):
    """-> (a facebook/hubert-base-ls960 snapshot folder, a folder holding GitMylo/bark-voice-cloning's default
    quantizer file): random weights in the layouts users download (a version-0 quantizer, saved as its
    authors save it: a state dict)."""
    references()
    return random_cloning_weights(str(tmp_path_factory.mktemp("cloning_sources")))


@pytest.fixture(scope="session")
def converted(hf_snapshot, tmp_path_factory):
    from nanobark.weights.convert.folder import convert

    return convert(hf_snapshot, str(tmp_path_factory.mktemp("converted")))


@pytest.fixture(scope="module")
def bark(converted):
    """nanobark's Bark on `converted`, on the CPU: one per test module."""
    return Bark.from_pretrained(converted, device="cpu")


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: argument errors must be found before."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Bark, "from_pretrained", refuse)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the rest of the module, as in subprocesses with OMP_NUM_THREADS=1 (the same
    bytes), and no two threads spinning against each other on a busy 2-core machine (tiny models run faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """NANOBARK_CACHE at a fresh folder for the module's tests (restored after): -> its path."""
    path = str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("NANOBARK_CACHE")
    os.environ["NANOBARK_CACHE"] = path
    yield path
    if old is None:
        del os.environ["NANOBARK_CACHE"]
    else:
        os.environ["NANOBARK_CACHE"] = old
