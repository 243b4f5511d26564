"""Shared fixtures. The reference implementations are imported here, once, in the order they need.

Suno's `bark` imports `encodec`, which imports `torchaudio` at import time; torchaudio does not load beside
the CPU build of torch. transformers must be imported first (it probes torchaudio itself), then an empty
module stands in for torchaudio so `import bark` succeeds. nanobark never needs torchaudio.
"""
import sys
import types

import pytest
import torch

import transformers  # noqa: F401  (must come before the torchaudio stand-in)

sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))

torch.set_num_threads(2)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer end-to-end test")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- tiny random models with the real token layout -------------------------------------------------

TINY = dict(num_layers=2, num_heads=2, hidden_size=32, block_size=1024, bias=False, dropout=0.0)


def tiny_hf_config(**overrides):
    from transformers import BarkConfig, EncodecConfig
    sub = {**TINY, **overrides}
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1),
        codec_config=EncodecConfig().to_dict())


@torch.no_grad()
def randomize_(model, std=0.05):
    """Random values everywhere a fresh model has structure that would hide bugs.

    LayerNorm weights/biases (ones/zeros), EnCodec codebooks (all zero) and weight-norm
    magnitudes (g = |v| at init) are all replaced. Tied tensors stay tied (same Parameter).
    """
    for name, p in model.named_parameters():
        if "parametrizations.weight.original0" in name or name.endswith("weight_g"):
            p.mul_(torch.empty_like(p).uniform_(0.5, 2.0))
        elif "norm" in name or ".ln_" in name:
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        elif "parametrizations" not in name and "weight_v" not in name and "lstm" not in name:
            p.normal_(0.0, std)
    for name, b in model.named_buffers():
        if name.endswith("codebook.embed") or name.endswith("_codebook.embed"):
            b.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="session")
def hf_bark():
    """A tiny random transformers BarkModel (real vocab sizes and real EnCodec 24 kHz shapes)."""
    from transformers import BarkModel
    torch.manual_seed(1234)
    return randomize_(BarkModel(tiny_hf_config())).eval()


@pytest.fixture(scope="session")
def hf_snapshot(hf_bark, tmp_path_factory):
    """What BarkModel.save_pretrained writes (model.safetensors + config.json)."""
    path = tmp_path_factory.mktemp("hf_snapshot")
    hf_bark.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def converted(hf_snapshot, tmp_path_factory):
    from weights_convert.convert import convert
    return convert(hf_snapshot, str(tmp_path_factory.mktemp("converted")))
