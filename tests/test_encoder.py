"""EnCodec encoder parity: nanobark's codes equal transformers' and the encodec package's at 6 kbps (random
weights, randomized codebooks and weight-norm gains), and the converter keeps the encoder from both layouts.

A code may differ from a reference's only at a tie: where the two codewords are equally near the residual to
within float rounding. _compare counts such ties (recorded as the test property "ties") and fails on any other
difference; after the first differing codebook of a frame, that frame's later codes follow from it and are not
compared. (With the reference's operations reproduced op for op, the count has been 0.)
"""

import copy
import functools
import math
import os
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import legacy_weight_norm_names, randomize_codec, references
from nanobark.codec import Codec, Encoder
from nanobark.config import CodecConfig
from nanobark.weights.checkpoint import STAGE_CLASSES, CheckpointError, load_encoder, load_stage
from nanobark.weights.convert.codec_keys import (
    codec_from_encodec,
    codec_from_transformers,
    encoder_from_encodec,
    encoder_from_transformers,
)
from nanobark.weights.convert.folder import from_transformers, read_codec
from nanobark.weights.convert.source import Source

CFG = CodecConfig()
# a few samples (the too-short-to-reflect branches), around one frame, whole and partial frames, 1 to 5 s
LENGTHS = [1, 7, 319, 320, 321, 24_000 + 161, 24_000 * 5 + 7]


def _ours(sd, layout):
    """nanobark's Encoder and Codec from a reference's state dict, through the converter's key tables."""
    take_encoder, take_codec, kw = {
        "transformers": (encoder_from_transformers, codec_from_transformers, {"prefix": ""}),
        "encodec": (encoder_from_encodec, codec_from_encodec, {}),
    }[layout]
    src = Source(sd, layout)
    encoder_state, codec_state = take_encoder(src, CFG, **kw), take_codec(src, CFG, **kw)
    src.finish()  # every tensor used, none missing
    encoder, codec = Encoder(CFG).eval(), Codec(CFG).eval()
    encoder.load_state_dict(encoder_state, strict=True)
    codec.load_state_dict(codec_state, strict=True)
    encoder.codebooks = codec.codebooks
    return encoder, codec


@pytest.fixture(scope="module")
def models():
    """{layout: (reference, nanobark encoder, nanobark codec)}, each reference with weights of its own."""
    references()
    from encodec import EncodecModel as Original  # after the torchaudio stand-in
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(1)
    hf = randomize_codec(EncodecModel(EncodecConfig())).eval()
    torch.manual_seed(2)
    original = randomize_codec(Original.encodec_model_24khz(pretrained=False)).eval()
    original.set_target_bandwidth(6.0)  # as Bark does: 8 codebooks
    return {
        "transformers": (hf, *_ours(hf.state_dict(), "transformers")),
        "encodec": (original, *_ours(original.state_dict(), "encodec")),
    }


def _reference_codes(layout, ref, audio):
    """A reference's codes (B, 8, T) for audio (B, L), and its decode of them (B, 320T)."""
    if layout == "transformers":
        out = ref.encode(audio[:, None], bandwidth=6.0)
        return out.audio_codes[0], ref.decode(out.audio_codes, out.audio_scales).audio_values[:, 0]
    frames = ref.encode(audio[:, None])
    assert len(frames) == 1  # no segmenting for the 24 kHz model
    return frames[0][0], ref.decode(frames)[:, 0]


def _compare(encoder, audio, got, want):
    """How many frames differ at a tie; raise on a difference that is not one."""
    if torch.equal(got, want):
        return 0
    z, books = encoder.latent(audio).double(), encoder.codebooks.double()
    ties = 0
    for b, t in {(b, t) for b, _, t in (got != want).nonzero().tolist()}:
        k = int((got[b, :, t] != want[b, :, t]).nonzero()[0])  # the first codebook that differs
        r = z[b, :, t] - sum(books[j, want[b, j, t]] for j in range(k))  # the residual both saw
        ours, theirs = books[k, got[b, k, t]], books[k, want[b, k, t]]
        gap = abs((r - ours).pow(2).sum() - (r - theirs).pow(2).sum())
        scale = r.pow(2).sum() + ours.pow(2).sum() + theirs.pow(2).sum()  # the sizes of the terms rounded
        assert gap <= 1e-5 * scale, f"batch {b}, frame {t}, codebook {k}: {got[b, k, t]} vs {want[b, k, t]}"
        ties += 1
    return ties


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("layout", ["transformers", "encodec"])
@torch.no_grad()
def test_codes_equal_reference(models, layout, batch, record_property):
    ref, encoder, _ = models[layout]
    ties = 0
    for L in LENGTHS:
        audio = torch.randn(batch, L) * 0.3
        got = encoder.encode(audio)
        want, _ = _reference_codes(layout, ref, audio)
        assert got.shape == (batch, 8, math.ceil(L / 320)) and got.dtype == torch.int64, L
        ties += _compare(encoder, audio, got, want)
    record_property("ties", ties)
    assert ties <= 2, f"{ties} ties: expected them to be rare"
    # the test is not trivial: the last (5 s) clip's frames spread over many codewords in every codebook
    assert min(len(got[:, k].unique()) for k in range(8)) > 50


@torch.no_grad()
def test_tie_check_allows_only_ties(models):
    """_compare itself: an exact tie (a duplicated codeword) passes and is counted; another codeword fails."""
    encoder = copy.deepcopy(models["encodec"][1])
    audio = torch.randn(1, 3200) * 0.3
    codes = encoder.encode(audio)
    k, t = 3, 5
    chosen = codes[0, k, t]
    spare = (chosen + 512) % 1024
    encoder.codebooks = encoder.codebooks.clone()
    encoder.codebooks[k, spare] = encoder.codebooks[k, chosen]
    want = codes.clone()
    want[0, k, t], want[0, k + 1, t] = spare, (codes[0, k + 1, t] + 1) % 1024  # and a consequence after it
    assert _compare(encoder, audio, codes, want) == 1
    want[0, k, t] = (chosen + 1) % 1024
    with pytest.raises(AssertionError, match=f"frame {t}, codebook {k}"):
        _compare(encoder, audio, codes, want)


@pytest.mark.parametrize("layout", ["transformers", "encodec"])
@torch.no_grad()
def test_decode_of_encode_equals_reference(models, layout):
    ref, encoder, codec = models[layout]
    for L in (321, 24_000 + 7):
        audio = torch.randn(2, L) * 0.3
        codes = encoder.encode(audio)
        want_codes, want = _reference_codes(layout, ref, audio)
        assert torch.equal(codes, want_codes)
        got = codec.decode(codes)
        assert got.shape == want.shape == (2, 320 * math.ceil(L / 320))
        assert (got - want).abs().max() < 1e-5, L


@pytest.mark.parametrize("layout", ["EncodecModel", "EncodecModel, legacy names", "BarkModel", "encodec"])
def test_key_tables_take_the_whole_encoder(models, layout):
    """Every encoder key of the real layouts (transformers' on the meta device) is taken, nothing left over."""
    from transformers import EncodecConfig, EncodecModel

    with torch.device("meta"):
        hf = EncodecModel(EncodecConfig()).state_dict()
    sd, prefix = {
        "EncodecModel": (hf, ""),
        "EncodecModel, legacy names": (legacy_weight_norm_names(hf), ""),
        "BarkModel": ({f"codec_model.{k}": v for k, v in legacy_weight_norm_names(hf).items()}, "codec_model."),
        "encodec": (models["encodec"][0].state_dict(), ""),
    }[layout]
    if layout == "encodec":
        take_encoder, take_codec = encoder_from_encodec, codec_from_encodec
    else:
        take_encoder = functools.partial(encoder_from_transformers, prefix=prefix)
        take_codec = functools.partial(codec_from_transformers, prefix=prefix)
    src = Source(sd, layout)
    state = take_encoder(src, CFG)
    assert not [k for k in src.sd if k.startswith(f"{prefix}encoder.")]  # taken before the codec discards it
    with torch.device("meta"):
        expected = Encoder(CFG).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert "codebooks" not in state  # stored once, with the codec
    take_codec(src, CFG)
    src.finish()


@torch.no_grad()
def test_converted_folder_holds_the_encoder(hf_bark, converted):
    """A BarkModel snapshot, converted: encoder.safetensors beside the rest, no codebooks twice, the same codes."""
    assert "codebooks" not in load_file(os.path.join(converted, "encoder.safetensors"))
    assert "codebooks" in load_file(os.path.join(converted, "codec.safetensors"))
    encoder = load_encoder(converted)
    audio = torch.randn(2, 24_000 + 7) * 0.3
    want = hf_bark.codec_model.encode(audio[:, None], bandwidth=6.0).audio_codes[0]
    assert torch.equal(encoder.encode(audio), want)


@torch.no_grad()
def test_encodec_th_file_converts_the_encoder(models, converted, tmp_path):
    """Suno's layout takes the codec from encodec_24khz-*.th: the encoder comes along, and loads."""
    ref = models["encodec"][0]
    torch.save(ref.state_dict(), tmp_path / "encodec_24khz-d7cc33bc.th")
    _, codec_state, encoder_state = read_codec(str(tmp_path))
    folder = tmp_path / "converted"
    shutil.copytree(converted, folder)
    save_file(codec_state, folder / "codec.safetensors")
    save_file(encoder_state, folder / "encoder.safetensors")
    audio = torch.randn(1, 24_000) * 0.3
    assert torch.equal(load_encoder(str(folder)).encode(audio), _reference_codes("encodec", ref, audio)[0])


def test_folder_without_encoder_still_loads_and_says_how_to_fix(converted, tmp_path):
    """A folder converted before the encoder was kept: generation loads as before; the encoder names the fix."""
    folder = tmp_path / "old"
    shutil.copytree(converted, folder, ignore=shutil.ignore_patterns("encoder.safetensors"))
    for stage in STAGE_CLASSES:  # what Bark.from_pretrained loads
        load_stage(str(folder), stage)
    said = f"{re.escape(str(folder))} has no encoder.safetensors.*convert.* SRC {re.escape(str(folder))}"
    with pytest.raises(CheckpointError, match=said):
        load_encoder(str(folder))


def test_damaged_encoder_file_is_named(converted, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(converted, folder)
    state = load_file(folder / "encoder.safetensors")
    del state["downs.2.down.bias"]
    save_file(state, folder / "encoder.safetensors")
    with pytest.raises(CheckpointError, match="encoder.safetensors .*missing tensor 'downs.2.down.bias'.*convert"):
        load_encoder(str(folder))


def test_decoder_only_source_writes_no_encoder(hf_bark):
    sd = {k: v for k, v in hf_bark.state_dict().items() if not k.startswith("codec_model.encoder.")}
    _, states = from_transformers(sd, hf_bark.config.to_dict(), "decoder only")
    assert states["encoder"] is None and "codebooks" in states["codec"]


def test_empty_audio_is_refused(models):
    with pytest.raises(ValueError, match="at least one sample"):
        models["encodec"][1].encode(torch.zeros(1, 0))
