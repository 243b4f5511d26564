"""EnCodec 24 kHz checkpoints -> nanobark's Codec and Encoder state dicts (names in nanobark/codec.py).

Two source layouts, which differ only in names:
  transformers (EncodecModel, or BarkModel under "codec_model."):
      decoder.layers.{0,15}.conv, decoder.layers.{3,6,9,12}.conv (transposed), decoder.layers.{4,7,10,13}.
      {block.1,block.3,shortcut}.conv, decoder.layers.1.lstm, quantizer.layers.J.codebook.embed;
      encoder.layers.{0,15}.conv, encoder.layers.{3,6,9,12}.conv (strided), encoder.layers.{1,4,7,10}.
      {block.1,block.3,shortcut}.conv, encoder.layers.13.lstm
  the encodec package (encodec_24khz-d7cc33bc.th):
      decoder.model.N.conv.conv / .convtr.convtr / .block.1.conv.conv ..., encoder.model.N.conv.conv ...,
      quantizer.vq.layers.J._codebook.embed
Every conv is weight-normed: g ("weight_g" or "parametrizations.weight.original0") and v ("weight_v" or
"...original1"); we fold them into one plain weight. The codebooks past the 8th and the quantizer's training
state are discarded, and so is the encoder by codec_from_*: take it first, with encoder_from_*, to keep it.
"""

import re

import torch

from ...codec import Codec, Encoder
from .source import expected_shapes


def codec_from_transformers(src, cfg, prefix="codec_model."):
    """Take every codec tensor of a transformers Encodec/Bark state dict out of `src`: nanobark's codec state dict."""

    def conv(idx, sub, transposed):
        return f"{prefix}decoder.layers.{idx}.{sub}conv"

    unused = re.compile(
        re.escape(prefix) + r"(encoder\..*|quantizer\.layers\.\d+\.codebook\.(inited|cluster_size|embed|embed_avg))"
    )
    return _take_decoder(
        src,
        cfg,
        conv,
        f"{prefix}decoder.layers.1.lstm",
        lambda j: f"{prefix}quantizer.layers.{j}.codebook.embed",
        unused,
    )


def codec_from_encodec(src, cfg):
    """Same, for the original encodec package's 24 kHz checkpoint (no prefix)."""

    def conv(idx, sub, transposed):
        return f"decoder.model.{idx}.{sub}" + ("convtr.convtr" if transposed else "conv.conv")

    unused = re.compile(r"encoder\..*|quantizer\.vq\.layers\.\d+\._codebook\.(inited|cluster_size|embed|embed_avg)")
    return _take_decoder(
        src, cfg, conv, "decoder.model.1.lstm", lambda j: f"quantizer.vq.layers.{j}._codebook.embed", unused
    )


def encoder_from_transformers(src, cfg, prefix="codec_model."):
    """Take the encoder's tensors of a transformers Encodec/Bark state dict out of `src`: nanobark's Encoder
    state dict (its codebooks are the codec's), or None if `src` holds no encoder at all."""
    return _take_encoder(src, cfg, f"{prefix}encoder.layers.", "conv")


def encoder_from_encodec(src, cfg):
    """Same, for the original encodec package's 24 kHz checkpoint (no prefix)."""
    return _take_encoder(src, cfg, "encoder.model.", "conv.conv")


def _decoder_convs(cfg):
    """(our module name, source decoder index, source sub-path, transposed?) for every conv, in order.
    Source decoder layout: 0 conv, 1 lstm, then per upsampling block i: 2+3i ELU, 3+3i upsample, 4+3i residual block."""
    n = len(cfg.ratios)
    yield "conv_in", 0, "", False
    for i in range(n):
        yield f"ups.{i}.up", 3 + 3 * i, "", True
        for ours, theirs in (("conv1", "block.1."), ("conv2", "block.3."), ("shortcut", "shortcut.")):
            yield f"ups.{i}.res.{ours}", 4 + 3 * i, theirs, False
    yield "conv_out", 3 + 3 * n, "", False


def _encoder_convs(cfg):
    """(our module name, source encoder index, source sub-path) for every conv, in order. Source encoder
    layout: 0 conv, then per downsampling block i: 1+3i residual block, 2+3i ELU, 3+3i strided conv;
    then 1+3n lstm, 2+3n ELU, 3+3n conv."""
    n = len(cfg.ratios)
    yield "conv_in", 0, ""
    for i in range(n):
        for ours, theirs in (("conv1", "block.1."), ("conv2", "block.3."), ("shortcut", "shortcut.")):
            yield f"downs.{i}.res.{ours}", 1 + 3 * i, theirs
        yield f"downs.{i}.down", 3 + 3 * i, ""
    yield "conv_out", 3 + 3 * n, ""


def _take_decoder(src, cfg, conv_name, lstm, codebook_key, unused):
    shapes = expected_shapes(Codec, cfg)
    convs = [(ours, conv_name(idx, sub, transposed)) for ours, idx, sub, transposed in _decoder_convs(cfg)]
    out = _take_convs_and_lstm(src, shapes, convs, lstm)
    books = [src.take(codebook_key(j), shapes["codebooks"][1:]) for j in range(cfg.n_codebooks)]
    out["codebooks"] = None if any(b is None for b in books) else torch.stack(books)
    src.discard(unused.fullmatch)  # the encoder and the other codebooks' state, after taking what we need
    return {k: v for k, v in out.items() if v is not None}  # anything missing is in src's report


def _take_encoder(src, cfg, layers, conv):
    """layers: the source's name for the list of encoder layers; conv: where a layer's conv sits in it."""
    if not any(k.startswith(layers) for k in src.sd):
        return None  # a decoder-only source: no encoder.safetensors, and load_encoder says why
    shapes = expected_shapes(Encoder, cfg)  # no codebooks in it
    convs = [(ours, f"{layers}{idx}.{sub}{conv}") for ours, idx, sub in _encoder_convs(cfg)]
    out = _take_convs_and_lstm(src, shapes, convs, f"{layers}{1 + 3 * len(cfg.ratios)}.lstm")
    return {k: v for k, v in out.items() if v is not None}  # anything missing is in src's report


def _take_convs_and_lstm(src, shapes, convs, lstm):
    """convs: (our conv's name, the source conv's name) pairs; lstm: the source LSTM's name."""
    out = {}
    for ours, theirs in convs:
        # over dim 0: per *input* channel of a ConvTranspose1d, whose weight is (in, out, k)
        out[f"{ours}.weight"] = src.take_weight_norm(theirs, shapes[f"{ours}.weight"], 0)
        out[f"{ours}.bias"] = src.take(f"{theirs}.bias", shapes[f"{ours}.bias"])
    for k in shapes:
        if k.startswith("lstm."):
            out[k] = src.take(lstm + k[len("lstm") :], shapes[k])
    return out
