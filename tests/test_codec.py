"""Codec parity: nanobark's decoder against transformers' and the encodec package's, on random weights."""

import pytest
import torch

from helpers import legacy_weight_norm_names, randomize_codec, references
from nanobark.codec import Codec
from nanobark.config import CodecConfig
from nanobark.weights.convert.codec_keys import codec_from_encodec, codec_from_transformers
from nanobark.weights.convert.source import ConversionError, Source

CFG = CodecConfig()
LENGTHS = [*range(1, 9), 75]  # T <= 6 hits the too-short-to-reflect branch of the first conv


@pytest.fixture(scope="module")
def hf():
    references()
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(1)
    return randomize_codec(EncodecModel(EncodecConfig()).eval())


@pytest.fixture(scope="module")
def encodec_ref():
    references()
    from encodec import EncodecModel as Original  # after the torchaudio stand-in

    torch.manual_seed(2)
    return randomize_codec(Original.encodec_model_24khz(pretrained=False))


def _convert(fn, sd, **kw):
    src = Source(sd, "test")
    out = fn(src, CFG, **kw)
    src.finish()
    return out


def _load(sd):
    codec = Codec(CFG).eval()
    codec.load_state_dict(sd, strict=True)
    return codec


def _check_parity(codec, ref):
    for B in (1, 2):
        for T in LENGTHS:
            codes = torch.randint(0, CFG.codebook_size, (B, CFG.n_codebooks, T))
            with torch.no_grad():
                want = ref.decoder(ref.quantizer.decode(codes.transpose(0, 1))).squeeze(1)
                got = codec.decode(codes)
            assert got.shape == (B, 320 * T) and got.dtype == torch.float32
            assert (got - want).abs().max() < 1e-5, (B, T)


@pytest.mark.parametrize("naming", ["parametrizations", "legacy"])
def test_transformers_parity(hf, naming):
    sd = hf.state_dict()
    if naming == "legacy":
        sd = legacy_weight_norm_names(sd)
        assert any(k.endswith("weight_g") for k in sd)
    _check_parity(_load(_convert(codec_from_transformers, sd, prefix="")), hf)


def test_transformers_bark_prefix_and_fewer_codebooks(hf):
    sd = {"codec_model." + k: v for k, v in legacy_weight_norm_names(hf.state_dict()).items()}
    codec = _load(_convert(codec_from_transformers, sd))
    codes = torch.randint(0, CFG.codebook_size, (1, 2, 5))  # n_q = 2 < n_codebooks
    with torch.no_grad():
        want = hf.decoder(hf.quantizer.decode(codes.transpose(0, 1))).squeeze(1)
        assert (codec.decode(codes) - want).abs().max() < 1e-5


def test_encodec_parity(encodec_ref):
    _check_parity(_load(_convert(codec_from_encodec, encodec_ref.state_dict())), encodec_ref)


def test_wrong_shape_names_key(hf):
    sd = legacy_weight_norm_names(hf.state_dict())
    key = "decoder.layers.6.conv.weight_v"
    sd[key] = sd[key][:, :, :-1]
    with pytest.raises(ConversionError, match=key):
        _convert(codec_from_transformers, sd, prefix="")


def test_missing_names_key(encodec_ref):
    sd = encodec_ref.state_dict()
    key = "quantizer.vq.layers.7._codebook.embed"
    del sd[key]
    with pytest.raises(ConversionError, match=key):
        _convert(codec_from_encodec, sd)
