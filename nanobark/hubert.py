"""HuBERT base up to its 9th layer: 16 kHz audio -> the features that the semantic quantizer reads.

Voice cloning makes Bark's semantic ids from a recording in two steps: HuBERT (facebook/hubert-base-ls960,
or fairseq's hubert_base_ls960.pt: the same network) gives a 768-wide vector per 20 ms of audio, and the
community's quantizer (quantizer.py) maps each one to a semantic id. The quantizer was trained on the output
of the 9th of HuBERT's 12 layers (fairseq's output_layer=9, transformers' hidden_states[9]), so only 9
layers are built and run.

    audio (B, L) at 16 kHz, not normalized
    -> 7 convs without bias, GELU after each, GroupNorm after the first only   (B, 512, T)
    -> LayerNorm(512), Linear 512 -> 768                                       (B, T, 768)
    -> + GELU(grouped positional conv, kernel 128), LayerNorm                  (B, T, 768)
    -> 9 post-LN transformer layers: x = LN(x + attn(x)), then x = LN(x + mlp(x))
    -> features (B, T, 768),  T = (L - 400) // 320 + 1

The first GroupNorm normalizes each channel over the whole clip, so a clip cut into pieces gives other
features than the clip whole. The positional conv's weight norm is folded at conversion.
Shapes: B batch, L samples, T frames, C n_embd, nh heads, hd head size (C // nh).

State-dict names (hubert.safetensors; shapes for the default config):
    convs.{0..6}.weight                   (512, 1, 10), then (512, 512, 3) x 4 and (512, 512, 2) x 2
    conv_norm.{weight, bias}              (512,)            GroupNorm(512, 512): one group per channel
    feature_norm.{weight, bias}           (512,)
    proj.{weight, bias}                   (768, 512)
    pos_conv.{weight, bias}               (768, 48, 128)    16 groups of 48 channels
    ln.{weight, bias}                     (768,)
    layers.{0..8}.attn.{q, k, v, out}.{weight, bias}        (768, 768)
    layers.{0..8}.ln_1.{weight, bias}     (768,)            after attention
    layers.{0..8}.mlp.fc1.{weight, bias}  (3072, 768)
    layers.{0..8}.mlp.fc2.{weight, bias}  (768, 3072)
    layers.{0..8}.ln_2.{weight, bias}     (768,)            after the MLP
"""

import torch.nn as nn
import torch.nn.functional as F

from .config import HubertConfig

EPS = 1e-5  # every norm's, in fairseq and in transformers


def n_frames(n_samples, cfg=HubertConfig()):
    """Frames HuBERT makes of n_samples samples: (n_samples - 400) // 320 + 1 for base (49 for 1 s), 0 below 400."""
    n = n_samples
    for k, s in zip(cfg.conv_kernels, cfg.conv_strides):
        if n < k:
            return 0
        n = (n - k) // s + 1  # an unpadded strided conv
    return n


class SelfAttention(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.k = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.v = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.n_head = cfg.n_head

    def forward(self, x):
        B, T, C = x.shape
        # (B, T, C) each -> (B, nh, T, hd)
        q, k, v = (f(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # every frame sees every frame: no mask
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.fc2 = nn.Linear(cfg.n_inner, cfg.n_embd)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact erf GELU


class Layer(nn.Module):
    """Post-LN transformer layer (BERT's order, not GPT's): each LayerNorm comes after its residual sum."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=EPS)
        self.mlp = MLP(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=EPS)

    def forward(self, x):
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class Hubert(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.cfg = cfg
        c_in = [1] + [cfg.conv_dim] * (len(cfg.conv_kernels) - 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c, cfg.conv_dim, k, stride=s, bias=False)
            for c, k, s in zip(c_in, cfg.conv_kernels, cfg.conv_strides)
        )
        self.conv_norm = nn.GroupNorm(cfg.conv_dim, cfg.conv_dim, eps=EPS)  # after the first conv only
        self.feature_norm = nn.LayerNorm(cfg.conv_dim, eps=EPS)
        self.proj = nn.Linear(cfg.conv_dim, cfg.n_embd)
        # relative position, learned: a wide grouped conv over time whose output is added to its input
        k = cfg.pos_kernel
        self.pos_conv = nn.Conv1d(cfg.n_embd, cfg.n_embd, k, padding=k // 2, groups=cfg.pos_groups)
        self.ln = nn.LayerNorm(cfg.n_embd, eps=EPS)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))

    def forward(self, audio):
        """audio (B, L) float32 at 16 kHz, L >= 400 -> features (B, T, n_embd), T = n_frames(L)."""
        if audio.dim() != 2 or n_frames(audio.shape[-1], self.cfg) == 0:
            raise ValueError(
                f"audio must be (batch, samples) with at least one frame's samples (400 for HuBERT base), "
                f"got {tuple(audio.shape)}"
            )
        x = audio.unsqueeze(1)  # (B, 1, L)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i == 0:
                x = self.conv_norm(x)
            x = F.gelu(x)  # (B, 512, T) after the last
        x = self.proj(self.feature_norm(x.transpose(1, 2)))  # (B, T, C)
        T = x.shape[1]
        # an even kernel k padded by k/2 on both sides gives T + 1 frames: the last one is dropped
        pos = self.pos_conv(x.transpose(1, 2))[..., :T]
        x = self.ln(x + F.gelu(pos).transpose(1, 2))
        for layer in self.layers:
            x = layer(x)
        return x
