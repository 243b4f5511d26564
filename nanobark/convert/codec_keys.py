"""EnCodec 24 kHz checkpoints -> nanobark's Codec state dict (names in nanobark/codec.py).

Two source layouts, which differ only in names:
  transformers (EncodecModel, or BarkModel under "codec_model."):
      decoder.layers.{0,15}.conv, decoder.layers.{3,6,9,12}.conv (transposed), decoder.layers.{4,7,10,13}.
      {block.1,block.3,shortcut}.conv, decoder.layers.1.lstm, quantizer.layers.J.codebook.embed
  the encodec package (encodec_24khz-d7cc33bc.th):
      decoder.model.N.conv.conv / .convtr.convtr / .block.1.conv.conv ..., quantizer.vq.layers.J._codebook.embed
Every conv is weight-normed: g ("weight_g" or "parametrizations.weight.original0") and v ("weight_v" or
"...original1"); we fold them into one plain weight. The encoder and the unused codebooks are discarded.
"""

import re

import torch

from ..codec import Codec


def codec_from_transformers(src, cfg, prefix="codec_model."):
    """Take every codec tensor of a transformers Encodec/Bark state dict out of `src`: nanobark's codec state dict."""

    def conv(idx, sub, transposed):
        return f"{prefix}decoder.layers.{idx}.{sub}conv"

    unused = re.compile(
        re.escape(prefix)
        + r"(encoder\..*|quantizer\.layers\.\d+\.codebook\.(inited|cluster_size|embed|embed_avg))"
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

    unused = re.compile(
        r"encoder\..*|quantizer\.vq\.layers\.\d+\._codebook\.(inited|cluster_size|embed|embed_avg)"
    )
    return _take_decoder(
        src, cfg, conv, "decoder.model.1.lstm", lambda j: f"quantizer.vq.layers.{j}._codebook.embed", unused
    )


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


def _take_decoder(src, cfg, conv_name, lstm, codebook_key, unused):
    with torch.device("meta"):  # only for the names and shapes nanobark expects
        shapes = {k: tuple(v.shape) for k, v in Codec(cfg).state_dict().items()}
    out = {}
    for ours, idx, sub, transposed in _decoder_convs(cfg):
        theirs = conv_name(idx, sub, transposed)
        out[f"{ours}.weight"] = _take_weight_norm(src, theirs, shapes[f"{ours}.weight"])
        out[f"{ours}.bias"] = src.take(f"{theirs}.bias", shapes[f"{ours}.bias"])
    for k in shapes:
        if k.startswith("lstm."):
            out[k] = src.take(lstm + k[len("lstm") :], shapes[k])
    books = [src.take(codebook_key(j), shapes["codebooks"][1:]) for j in range(cfg.n_codebooks)]
    out["codebooks"] = None if any(b is None for b in books) else torch.stack(books)
    src.discard(unused.fullmatch)  # the encoder and the other codebooks' state, after taking what we need
    return {k: v for k, v in out.items() if v is not None}  # anything missing is in src's report


def _take_weight_norm(src, key, shape):
    """Fold g, v into w = g * v / ||v||, the norm over all dims but 0 (so per *input* channel of a
    ConvTranspose1d, whose weight is (in, out, k)). torch._weight_norm is what the reference computes."""
    g_name, v_name = "weight_g", "weight_v"  # the Hub files and the encodec package
    if src.has(f"{key}.parametrizations.weight.original0"):  # a fresh transformers 5.x model
        g_name, v_name = "parametrizations.weight.original0", "parametrizations.weight.original1"
    g = src.take(f"{key}.{g_name}", (shape[0], 1, 1))
    v = src.take(f"{key}.{v_name}", shape)
    return None if g is None or v is None else torch._weight_norm(v, g, 0)
