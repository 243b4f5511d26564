"""EnCodec 24 kHz: residual-VQ codes -> SEANet decoder -> waveform, and back (the encoder, for voice cloning).

Bark's fine stage emits 8 codebooks of tokens at 75 frames/s; each frame becomes 320 samples
at 24 kHz. Codec decodes them; Encoder turns a recording into such codes (a voice prompt's acoustic half).
No quantizer training state is kept (no EMA statistics, no k-means).

    Codec.decode:
    codes (B, n_q, T) -> sum of codebook vectors (B, 128, T) -> conv_in (B, 512, T) -> LSTM + skip
    -> 4 upsampling blocks [ELU, ConvTranspose1d x r, residual block]: (B, 256, 8T) ... (B, 32, 320T)
    -> ELU -> conv_out -> audio (B, 320T)

    Encoder.encode, the mirror image (ratios reversed: 2, 4, 5, 8):
    audio (B, L) -> conv_in (B, 32, L)
    -> 4 downsampling blocks [residual block, ELU, strided conv / r]: (B, 64, ceil(L/2)) ... (B, 512, T)
    -> LSTM + skip -> ELU -> conv_out -> latent (B, 128, T), T = ceil(L/320)
    -> residual VQ: for each of 8 codebooks, the nearest codeword, subtracted before the next -> codes (B, 8, T)

Every conv is causal (reflect-padded on the left) and plain: weight norm is folded at conversion.

State-dict names (shapes for the default config):
    Codec (codec.safetensors)
    codebooks                            (8, 1024, 128)    first n_codebooks RVQ codebooks
    conv_in.{weight, bias}               (512, 128, 7)
    lstm.{weight_ih, weight_hh}_l{0,1}   (2048, 512)       nn.LSTM(512, 512, 2), gates i, f, g, o
    lstm.{bias_ih, bias_hh}_l{0,1}       (2048,)
    ups.{0..3}.up.{weight, bias}         (C_in, C_out, 2r) ConvTranspose1d, C: 512 -> 256 -> 128 -> 64 -> 32
    ups.{0..3}.res.conv1.{weight, bias}  (C/2, C, 3)
    ups.{0..3}.res.conv2.{weight, bias}  (C, C/2, 1)
    ups.{0..3}.res.shortcut.{w, b}       (C, C, 1)
    conv_out.{weight, bias}              (1, 32, 7)

    Encoder (encoder.safetensors; its codebooks are the Codec's, stored once, not in its state dict)
    conv_in.{weight, bias}               (32, 1, 7)
    downs.{0..3}.res.{conv1, conv2, shortcut}.{weight, bias}   as above, C: 32 -> 64 -> 128 -> 256
    downs.{0..3}.down.{weight, bias}     (2C, C, 2r)       strided Conv1d, r = 2, 4, 5, 8
    lstm.*                               as above          nn.LSTM(512, 512, 2)
    conv_out.{weight, bias}              (128, 512, 7)
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
    enough that the last window is complete (EnCodec's "extra" padding, reflected too): 0 for the
    stride-1 convs, (-L) mod r for the encoder's kernel-2r stride-r ones, so L samples give ceil(L/r)."""

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


def lstm_with_skip(lstm, x):
    """x + lstm(x) over the time axis, from a zero state. (B, C, T) -> (B, C, T)"""
    h = x.permute(2, 0, 1)  # (T, B, C): the LSTM is time-major
    return (lstm(h)[0] + h).permute(1, 2, 0)


class DownBlock(nn.Module):
    """Residual block, ELU, downsample the time axis by `ratio`. (B, C_in, L) -> (B, C_out, ceil(L/ratio))"""

    def __init__(self, c_in, c_out, ratio, cfg):
        super().__init__()
        self.res = ResBlock(c_in, cfg)
        # kernel 2r, stride r: CausalConv1d pads r on the left and the tail up to a whole multiple of r
        self.down = CausalConv1d(c_in, c_out, 2 * ratio, stride=ratio)

    def forward(self, x):
        return self.down(F.elu(self.res(x)))


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
        self.ups = nn.ModuleList(UpBlock(width >> i, width >> (i + 1), r, cfg) for i, r in enumerate(cfg.ratios))
        self.conv_out = CausalConv1d(cfg.n_filters, 1, cfg.last_kernel_size)

    def decode(self, codes):
        """codes (B, n_q, T) ints in [0, codebook_size), n_q <= n_codebooks -> float32 audio (B, 320*T)."""
        n_q = codes.shape[1]
        assert n_q <= self.cfg.n_codebooks, f"{n_q} codebooks given, the codec has {self.cfg.n_codebooks}"
        # residual VQ: the latent is the plain sum of one vector per codebook, added in codebook order
        z = sum(F.embedding(codes[:, i], self.codebooks[i]) for i in range(n_q))  # (B, T, 128)
        x = lstm_with_skip(self.lstm, self.conv_in(z.transpose(1, 2)))  # (B, 512, T)
        for up in self.ups:
            x = up(x)  # (B, 32, 320T) after the last
        return self.conv_out(F.elu(x)).squeeze(1).float()  # no tanh, no clamp

    def forward(self, codes):
        return self.decode(codes)


class Encoder(nn.Module):
    """EnCodec's SEANet encoder and residual-VQ encoding at n_codebooks codebooks (8: 6 kbps, as Bark)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        # the decoder's codebooks: not in this state dict (persistent=False) so that they are stored once,
        # in codec.safetensors; checkpoint.load_encoder fills them in
        shape = (cfg.n_codebooks, cfg.codebook_size, cfg.dimension)
        self.register_buffer("codebooks", torch.zeros(shape), persistent=False)
        self.conv_in = CausalConv1d(1, cfg.n_filters, cfg.kernel_size)
        self.downs = nn.ModuleList(  # the decoder's ratios reversed; the width doubles in every block
            DownBlock(cfg.n_filters << i, cfg.n_filters << (i + 1), r, cfg) for i, r in enumerate(reversed(cfg.ratios))
        )
        width = cfg.n_filters << len(cfg.ratios)  # 512
        self.lstm = nn.LSTM(width, width, cfg.lstm_layers)
        self.conv_out = CausalConv1d(width, cfg.dimension, cfg.last_kernel_size)

    def latent(self, audio):
        """audio (B, L) at 24 kHz -> the continuous latent (B, 128, ceil(L/320)) that the codes approximate."""
        x = self.conv_in(audio.unsqueeze(1))  # (B, 32, L)
        for down in self.downs:
            x = down(x)  # (B, 512, T) after the last
        return self.conv_out(F.elu(lstm_with_skip(self.lstm, x)))

    def quantize(self, z):
        """latent (B, 128, T) -> codes (B, n_codebooks, T) int64: the nearest codeword, subtract, next codebook.

        Written op for op as EnCodec does it (the same flattening, and the |x|^2 term that changes no
        choice but does change the float rounding), so the choices agree with it even between codewords
        that are nearly equally near."""
        B, D, T = z.shape
        residual, codes = z, []
        for book in self.codebooks:  # (1024, 128)
            x = residual.permute(0, 2, 1).reshape(-1, D)  # (B*T, 128)
            e = book.t()
            dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))  # (B*T, 1024)
            idx = dist.max(dim=-1).indices.view(B, T)
            # what is left for the next codebook
            residual = residual - F.embedding(idx, book).permute(0, 2, 1)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def encode(self, audio):
        """audio (B, L) float32 at 24 kHz, L >= 1 -> codes (B, n_codebooks, ceil(L/320)) int64 in [0, 1024)."""
        if audio.dim() != 2 or audio.shape[-1] == 0:
            raise ValueError(f"audio must be (batch, samples) with at least one sample, got {tuple(audio.shape)}")
        return self.quantize(self.latent(audio))

    def forward(self, audio):
        return self.encode(audio)
