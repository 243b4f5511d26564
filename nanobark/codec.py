"""The EnCodec 24 kHz decoder: residual-VQ codes -> SEANet decoder -> waveform.

Bark's fine stage emits 8 codebooks of tokens at 75 frames/s; each frame becomes 320 samples
at 24 kHz. Only the decode path is here (no encoder, no quantizer training state).

    codes (B, n_q, T) -> sum of codebook vectors (B, 128, T) -> conv_in (B, 512, T) -> LSTM + skip
    -> 4 upsampling blocks [ELU, ConvTranspose1d x r, residual block]: (B, 256, 8T) ... (B, 32, 320T)
    -> ELU -> conv_out -> audio (B, 320T)

Every conv is causal (reflect-padded on the left) and plain: weight norm is folded at conversion.

State-dict names (shapes for the default config):
    codebooks                            (8, 1024, 128)    first n_codebooks RVQ codebooks
    conv_in.{weight, bias}               (512, 128, 7)
    lstm.{weight_ih, weight_hh}_l{0,1}   (2048, 512)       nn.LSTM(512, 512, 2), gates i, f, g, o
    lstm.{bias_ih, bias_hh}_l{0,1}       (2048,)
    ups.{0..3}.up.{weight, bias}         (C_in, C_out, 2r) ConvTranspose1d, C: 512 -> 256 -> 128 -> 64 -> 32
    ups.{0..3}.res.conv1.{weight, bias}  (C/2, C, 3)
    ups.{0..3}.res.conv2.{weight, bias}  (C, C/2, 1)
    ups.{0..3}.res.shortcut.{w, b}       (C, C, 1)
    conv_out.{weight, bias}              (1, 32, 7)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CodecConfig


def reflect_pad(x, left, right):
    """F.pad(reflect) that also works when x is too short to mirror, the way EnCodec does it:
    zero-extend on the right first, reflect, then cut the zeros' share off again. (B, C, L) -> (B, C, L+left+right)"""
    extra = max(0, max(left, right) - x.shape[-1] + 1)
    x = F.pad(x, (0, extra))
    x = F.pad(x, (left, right), mode="reflect")
    return x[..., : x.shape[-1] - extra]


class CausalConv1d(nn.Conv1d):
    """Conv1d that sees only the past: reflect-pad k - stride on the left, and on the right just
    enough that the last window is complete (always 0 for the decoder's stride-1 convs)."""

    def forward(self, x):
        k, s, L = self.kernel_size[0], self.stride[0], x.shape[-1]
        pad = k - s
        extra = (math.ceil((L - k + pad) / s + 1) - 1) * s + k - pad - L
        return super().forward(reflect_pad(x, pad, extra))


class ResBlock(nn.Module):
    """x -> shortcut(x) + conv2(elu(conv1(elu(x)))), with the hidden width squeezed by `compress`."""

    def __init__(self, dim, cfg):
        super().__init__()
        hidden = dim // cfg.compress
        self.conv1 = CausalConv1d(dim, hidden, cfg.residual_kernel_size)
        self.conv2 = CausalConv1d(hidden, dim, 1)
        self.shortcut = CausalConv1d(dim, dim, 1)

    def forward(self, x):
        return self.shortcut(x) + self.conv2(F.elu(self.conv1(F.elu(x))))


class UpBlock(nn.Module):
    """ELU, upsample the time axis by `ratio`, residual block. (B, C_in, L) -> (B, C_out, ratio*L)"""

    def __init__(self, c_in, c_out, ratio, cfg):
        super().__init__()
        self.up = nn.ConvTranspose1d(c_in, c_out, 2 * ratio, stride=ratio)
        self.res = ResBlock(c_out, cfg)

    def forward(self, x):
        x = self.up(F.elu(x))  # (B, C_out, (L+1)*ratio): the transposed conv overhangs by k - stride
        trim = self.up.kernel_size[0] - self.up.stride[0]
        return self.res(x[..., : x.shape[-1] - trim])  # causal: all of the trim comes off the right


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        # the codebooks are not trained by gradient (EnCodec keeps them as EMA buffers), so a buffer
        self.register_buffer("codebooks", torch.zeros(cfg.n_codebooks, cfg.codebook_size, cfg.dimension))
        width = cfg.n_filters * 2 ** len(cfg.ratios)  # 512, halved by every upsampling block
        self.conv_in = CausalConv1d(cfg.dimension, width, cfg.kernel_size)
        self.lstm = nn.LSTM(width, width, cfg.lstm_layers)
        self.ups = nn.ModuleList(
            UpBlock(width >> i, width >> (i + 1), r, cfg) for i, r in enumerate(cfg.ratios)
        )
        self.conv_out = CausalConv1d(cfg.n_filters, 1, cfg.last_kernel_size)

    def decode(self, codes):
        """codes (B, n_q, T) ints in [0, codebook_size), n_q <= n_codebooks -> float32 audio (B, 320*T)."""
        n_q = codes.shape[1]
        assert n_q <= self.cfg.n_codebooks, f"{n_q} codebooks given, the codec has {self.cfg.n_codebooks}"
        # residual VQ: the latent is the plain sum of one vector per codebook, added in codebook order
        z = sum(F.embedding(codes[:, i], self.codebooks[i]) for i in range(n_q))  # (B, T, 128)
        x = self.conv_in(z.transpose(1, 2))  # (B, 512, T)
        h = x.permute(2, 0, 1)  # (T, B, 512): LSTM is time-major
        x = (self.lstm(h)[0] + h).permute(1, 2, 0)  # skip connection around the LSTM
        for up in self.ups:
            x = up(x)  # (B, 32, 320T) after the last
        return self.conv_out(F.elu(x)).squeeze(1).float()  # no tanh, no clamp

    def forward(self, codes):
        return self.decode(codes)
