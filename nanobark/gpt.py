"""The causal GPT of Bark's semantic (text) and coarse stages, with a static KV cache.

Same math as nanoGPT: pre-LayerNorm blocks, exact (erf) GELU, learned absolute positions,
no bias in the released checkpoints. Attention runs through SDPA.

The KV cache is preallocated once, (B, n_head, block_size, head_dim) per layer, and written
at explicit positions: a prefill writes positions [start, start+T), then each decode step
writes one. Attention then reads the cache up to the last written position, with an explicit mask
(see attention_mask), which also lets a batch hold contexts of different lengths.

Shapes: B batch, T new tokens, C n_embd, nh heads, hd head size (C // nh).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop just the bias in older versions)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class KVCache(nn.Module):
    def __init__(self, batch_size, n_head, block_size, head_dim, device=None, dtype=None):
        super().__init__()
        shape = (batch_size, n_head, block_size, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, start, k, v):
        """Write k, v (B, nh, T, hd) at positions [start, start+T); return the cache up to start+T.

        `start` may also be a 0-d tensor (the compiled one-token step): then the whole
        fixed-size cache is returned, so every step has the same shapes.
        """
        if isinstance(start, torch.Tensor):
            self.k.index_copy_(2, start.view(1), k)
            self.v.index_copy_(2, start.view(1), v)
            return self.k, self.v
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in that order
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.cache = None  # a KVCache when decoding

    def forward(self, x, start=0, mask=None):
        """x (B, T, C) at cache positions [start, start+T); mask: bool, True = may attend, or None = all."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if self.cache is not None:
            k, v = self.cache.update(start, k, v)  # (B, nh, start+T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact erf GELU, as in the original


class Block(nn.Module):
    def __init__(self, config: GPTConfig, causal=True):
        super().__init__()
        # the fine model's LayerNorms always have a bias, whatever config.bias says (a quirk of the original)
        ln_bias = config.bias or not causal
        self.ln_1 = LayerNorm(config.n_embd, ln_bias)
        self.attn = SelfAttention(config)  # causal or not, the mask passed in decides
        self.ln_2 = LayerNorm(config.n_embd, ln_bias)
        self.mlp = MLP(config)

    def forward(self, x, start=0, mask=None):
        x = x + self.attn(self.ln_1(x), start, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.input_vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.output_vocab_size, bias=False)  # not tied to wte

    def setup_cache(self, batch_size, device=None, dtype=None):
        """Preallocate the static KV cache (reused when it already fits); every forward after this uses it."""
        c = self.config
        device = device or self.wte.weight.device
        dtype = dtype or self.wte.weight.dtype
        for block in self.h:
            cache = block.attn.cache
            if cache is None or cache.k.shape[0] != batch_size or cache.k.dtype != dtype or cache.k.device != device:
                block.attn.cache = KVCache(batch_size, c.n_head, c.block_size, c.n_embd // c.n_head, device, dtype)

    def clear_cache(self):
        for block in self.h:
            block.attn.cache = None

    def compile_step(self, mode=None):
        """Capture the one-token decode step with torch.compile (CUDA graphs with mode="reduce-overhead").

        The compiled step always attends over the whole fixed-size cache with a mask, so its
        shapes never change from step to step and it compiles once.
        """
        mode = mode or ("reduce-overhead" if self.wte.weight.is_cuda else "default")
        self._compiled_step = torch.compile(self._step, mode=mode, fullgraph=True, dynamic=False)

    def _step(self, idx, pos, pad, vocab=None):
        """idx (B, 1) at cache slot pos (0-d tensor); pad (B,) left-padding slots -> logits (B, 1, V)."""
        x = self.wte(idx) + self.wpe((pos - pad)[:, None])
        k = torch.arange(self.config.block_size, device=idx.device)
        mask = ((k <= pos) & (k >= pad[:, None]))[:, None, None, :]  # (B, 1, 1, block_size)
        for block in self.h:
            x = block(x, pos, mask)
        return self.head(self.ln_f(x), vocab)

    def decode_step(self, idx, start, pad=None, vocab=None):
        """One new token per sample at cache slot `start` (an int): logits (B, 1, V). Eager unless compiled."""
        if getattr(self, "_compiled_step", None) is None:
            return self(idx, start=start, pad=pad, last_only=True, vocab=vocab)
        pad = pad if pad is not None else torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)
        return self._compiled_step(idx, torch.tensor(start, device=idx.device), pad, vocab)

    def head(self, x, vocab=None):
        """Logits for every output id, or only for the ids in `vocab` (a slice).

        The coarse stage samples from one codebook's 1024 ids of 12096: reading only those rows
        of lm_head saves a tenth of the weight traffic of a decode step.
        """
        if vocab is None:
            return self.lm_head(x)
        if isinstance(self.lm_head, nn.Linear):
            return F.linear(x, self.lm_head.weight[vocab])
        return self.lm_head(x)[..., vocab]  # e.g. an int8 Linear, which cannot be sliced

    @torch.no_grad()
    def set_weight_layout(self, batch_size):
        """Lay the Linear weights out in memory for the batch size about to decode.

        At batch 1-2 a decode step is a matrix-vector product per layer, and CPU BLAS streams a
        widening weight stored transposed ((in, out) rows, still seen as the usual (out, in)
        Parameter) ~1.5x faster than torch's own layout (measured 18-20 vs 13 GB/s on a 2-core
        EPYC); from batch ~4 on, and for the narrowing MLP output, the usual layout is faster. Re-laying costs one copy of the weights
        per stage call. Same values; only the summation order inside the products changes.
        """
        small_batch_cpu = self.wte.weight.device.type == "cpu" and batch_size <= 2
        for m in self.modules():
            if not isinstance(m, nn.Linear):
                continue
            # the widening matrices (q/k/v, MLP in, the head) gain; the narrowing MLP out does not
            transposed = small_batch_cpu and m.out_features >= m.in_features
            if m.weight.is_contiguous() == transposed:
                # swap the storage under the same Parameter, so references to it stay valid
                m.weight.data = m.weight.t().contiguous().t() if transposed else m.weight.contiguous()

    def merged_embedding(self, text, history, tail):
        """The semantic stage's context: position i < 256 holds wte(text[i]) + wte(history[i]).

        text, history: (B, 256) ids; tail: (B, n) ids (the infer token, then generated tokens).
        Returns (B, 256 + n, C) embeddings for `forward(embeds=...)`.
        """
        return torch.cat([self.wte(text) + self.wte(history), self.wte(tail)], dim=1)

    def forward(self, idx=None, start=0, embeds=None, pad=None, last_only=False, vocab=None):
        """idx (B, T) token ids, or embeds (B, T, C), at cache positions [start, start+T).

        pad (B,) counts left-padding slots per sample (batches of contexts of different lengths):
        those slots are never attended to, and positions are counted from the first real token.
        Returns logits (B, T, V), or (B, 1, V) for the last position only with last_only=True
        (V restricted to the ids in the slice `vocab` if given).
        """
        x = self.wte(idx) if embeds is None else embeds
        T = x.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} positions exceeds block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, device=x.device)
        if pad is not None:
            pos = (pos[None] - pad[:, None]).clamp(min=0)  # (B, T)
        x = x + self.wpe(pos)
        mask = attention_mask(start, T, pad, x.device)
        for block in self.h:
            x = block(x, start, mask)
        x = self.ln_f(x)
        if last_only:
            x = x[:, -1:]
        return self.head(x, vocab)


def attention_mask(start, T, pad, device):
    """Causal mask of query slots [start, start+T) over key slots [0, start+T): (T, S) or (B, 1, T, S) bool.

    Explicit, never `is_causal`, which would align the mask to the wrong corner once earlier
    positions sit in the cache. Left-padding slots are masked out; a padding query attends to
    itself only, so its (unused) output stays finite instead of NaN.
    """
    if pad is None and T == 1:
        return None  # one new token sees everything before it
    q = torch.arange(start, start + T, device=device)[:, None]
    k = torch.arange(start + T, device=device)[None, :]
    mask = k <= q  # (T, S)
    if pad is not None:
        mask = (mask & (k >= pad[:, None, None, None])) | (k == q)  # (B, 1, T, S)
    return mask
