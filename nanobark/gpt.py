"""The causal GPT of Bark's semantic (text) and coarse stages, with a static KV cache.

Same math as nanoGPT: pre-LayerNorm blocks, exact (erf) GELU, learned absolute positions,
no bias in the released checkpoints. Attention runs through SDPA.

The KV cache is preallocated once, (2, B, n_head, block_size, head_dim) per layer, and written
at explicit slots: a prefill writes slots [start, start+T), then each decode step writes one.
Attention reads the first n_keys slots with an explicit mask (see attention_mask), which also
lets a batch hold contexts of different lengths; a prefill from slot 0 with nothing padded is plain
causal attention, run as SDPA's is_causal (mask CAUSAL), which skips the masked half of the scores.
There is one path with two callers: `forward` reads only the slots written so far (n_keys = start + T),
`step_fixed` always reads all block_size slots, so its shapes never change and torch.compile captures it once.

Shapes: B batch, T new tokens, C n_embd, nh heads, hd head size (C // nh), S = n_keys.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig

CAUSAL = "causal"  # a `mask` value: the T queries sit at slots 0..T-1 and attend causally (SDPA's is_causal)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop just the bias in older versions)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class KVCache(nn.Module):
    """Keys and values of every slot in one buffer, (2, B, nh, block_size, hd): a step writes both in one copy."""

    def __init__(self, batch_size, n_head, block_size, head_dim, device=None, dtype=None):
        super().__init__()
        shape = (2, batch_size, n_head, block_size, head_dim)
        self.register_buffer("kv", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, slots, kv):
        """Write kv (2, B, nh, T, hd) at cache slots, a slice or a (T,) tensor (the compiled step's slot is one);
        return the keys and the values of every slot, (B, nh, block_size, hd) each.

        A slice is one copy that also converts the dtype: on a CPU, index_copy_ and a separate conversion cost
        ~0.4 ms more a bark-small step (two ops a layer after each weight-streaming product, docs/benchmarks.md)."""
        if isinstance(slots, slice):
            self.kv[:, :, :, slots] = kv
        else:
            self.kv.index_copy_(3, slots, kv.to(self.kv.dtype))
        return self.kv.unbind(0)


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in that order
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.cache = None  # a KVCache when decoding
        self.kv_dtype = None  # keys, values and attention in this dtype if set (int8 mode: bfloat16, cpu_speed.py)

    def forward(self, x, slots=None, mask=None, n_keys=None, last_only=False):
        """x (B, T, C) at cache slots (a slice, or a (T,) tensor), attending to the first n_keys slots;
        mask: bool (.., T, S), True = may attend, CAUSAL, or None = all. Without a cache, the T tokens attend
        to each other.
        last_only: every key and value is cached, but only the last query's output, (B, 1, C), is returned."""
        B, T, C = x.shape
        # (B, T, 3C) -> (3, B, nh, T, hd): q, k, v as views (fewer ops: a decode step runs 12 of these)
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.cache is not None:
            k, v = self.cache.update(slots, qkv[1:])
            k, v = k[:, :, :n_keys], v[:, :, :n_keys]  # (B, nh, S, hd)
            q = qkv[0].to(k.dtype)
        else:
            q, k, v = (qkv if self.kv_dtype is None else qkv.to(self.kv_dtype)).unbind(0)
        if last_only:  # the last query sees every key it is allowed to: causal is then no mask at all
            q, T = q[:, :, -1:], 1
            mask = None if mask is None or mask is CAUSAL else mask[..., -1:, :]
        if mask is CAUSAL:  # speed-up: SDPA's causal kernel skips the key blocks above the diagonal
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact erf GELU, as in the original


class Block(nn.Module):
    """Pre-LN transformer block; causal or not is decided by the mask passed in, not here."""

    def __init__(self, config: GPTConfig, ln_bias):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, ln_bias)
        self.attn = SelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, ln_bias)
        self.mlp = MLP(config)

    def forward(self, x, slots=None, mask=None, n_keys=None, last_only=False):
        """x (B, T, C) -> (B, T, C), or (B, 1, C) for the last token only (its keys and values all cached)."""
        y = self.attn(self.ln_1(x), slots, mask, n_keys, last_only)
        x = (x[:, -1:] if last_only else x) + y
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.input_vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config, ln_bias=config.bias) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.output_vocab_size, bias=False)  # not tied to wte

    def setup_cache(self, batch_size, device=None, dtype=None):
        """Preallocate the static KV cache (reused when it already fits); every forward after this uses it."""
        c = self.config
        device = device or self.wte.weight.device
        shape = (batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        for block in self.h:
            old, kv_dtype = block.attn.cache, dtype or block.attn.kv_dtype or self.wte.weight.dtype
            if old is None or old.kv.shape[1:] != shape or old.kv.dtype != kv_dtype or old.kv.device != device:
                block.attn.cache = KVCache(*shape, device, kv_dtype)

    def clear_cache(self):
        for block in self.h:
            block.attn.cache = None

    def compile_step(self, mode=None):
        """Capture step_fixed with torch.compile (CUDA graphs with mode="reduce-overhead"); decode_step uses it."""
        mode = mode or ("reduce-overhead" if self.wte.weight.is_cuda else "default")
        self._compiled_step = torch.compile(self.step_fixed, mode=mode, fullgraph=True, dynamic=False)

    def decode_step(self, idx, start, pad=None, logit_rows=None):
        """One new token per sample at cache slot `start` (an int): logits (B, 1, V). Eager unless compiled."""
        if getattr(self, "_compiled_step", None) is None:
            return self(idx, start=start, pad=pad, last_only=True, logit_rows=logit_rows)
        pad = pad if pad is not None else torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)
        return self._compiled_step(idx, torch.tensor(start, device=idx.device), pad, logit_rows)

    def step_fixed(self, idx, slot, pad, logit_rows=None):
        """idx (B, 1) at cache slot `slot` (0-d tensor); pad (B,) -> logits (B, 1, V), reading all block_size slots.

        Reading the whole cache (masked) keeps every shape fixed from step to step, which torch.compile needs;
        the eager `forward` reads only the slots written so far, which is faster on a CPU (docs/benchmarks.md).
        """
        slots = slot.view(1)
        mask = attention_mask(slots, self.config.block_size, pad)
        return self._run(self.wte(idx), slots, self.config.block_size, pad, mask, logit_rows)

    def forward(self, idx=None, start=0, embeds=None, pad=None, last_only=False, logit_rows=None):
        """idx (B, T) token ids, or embeds (B, T, C), at cache slots [start, start+T).

        pad (B,) counts left-padding slots per sample (batches of contexts of different lengths):
        those slots are never attended to, and positions are counted from the first real token.
        Returns logits (B, T, V), or (B, 1, V) for the last position only with last_only=True
        (V restricted to the ids in the slice `logit_rows` if given).
        """
        x = self.wte(idx) if embeds is None else embeds
        T = x.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} positions exceeds block_size {self.config.block_size}")
        slots = torch.arange(start, start + T, device=x.device)
        # one new token with nothing padded sees every slot written before it: no mask needed;
        # a prefill from slot 0 with nothing padded is plain causal attention (is_causal, as the original's prefill)
        if pad is None and T == 1:
            mask = None
        elif pad is None and start == 0:
            mask = CAUSAL
        else:
            mask = attention_mask(slots, start + T, pad)
        return self._run(x, slots, start + T, pad, mask, logit_rows, last_only, slice(start, start + T))

    def _run(self, x, slots, n_keys, pad, mask, logit_rows, last_only=True, write=None):
        """Embeddings x (B, T, C) of the tokens at cache slots (T,) -> logits, attending to the first n_keys slots.

        write: the same slots as a slice, where the cache takes them in one copy (the compiled step's are a tensor)."""
        pos = slots if pad is None else (slots[None] - pad[:, None]).clamp(min=0)  # (T,) or (B, T)
        x = x + self.wpe(pos)
        write = slots if write is None else write
        # speed-up: when only the last logits are read, the last block runs its attention output, projection
        # and MLP for the last token only (its keys and values are still cached): 1/12 of a bark-small prefill
        for i, block in enumerate(self.h):
            x = block(x, write, mask, n_keys, last_only and i == len(self.h) - 1 and x.shape[1] > 1)
        x = self.ln_f(x)
        if last_only:
            x = x[:, -1:]
        return self.head(x, logit_rows)

    def head(self, x, logit_rows=None):
        """Logits for every output id, or only for the ids in `logit_rows` (a slice).

        The coarse stage samples from one codebook's 1024 ids of 12096: reading only those rows
        of lm_head saves a tenth of the weight traffic of a decode step.
        """
        if logit_rows is None:
            return self.lm_head(x)
        if isinstance(self.lm_head, nn.Linear):
            return F.linear(x, self.lm_head.weight[logit_rows])
        return self.lm_head(x, rows=logit_rows)  # an Int8Linear (cpu_speed.py)

    def merged_embedding(self, text, history, tail):
        """The semantic stage's context: position i < 256 holds wte(text[i]) + wte(history[i]).

        text, history: (B, 256) ids; tail: (B, n) ids (the infer token, then generated tokens).
        Returns (B, 256 + n, C) embeddings for `forward(embeds=...)`.
        """
        return torch.cat([self.wte(text) + self.wte(history), self.wte(tail)], dim=1)


def attention_mask(slots, n_keys, pad):
    """Causal mask of the queries at cache slots (T,) over key slots [0, n_keys): (T, S) or (B, 1, T, S) bool.

    Explicit, since `is_causal` would align the mask to the wrong corner once earlier positions sit
    in the cache (forward uses is_causal only for a prefill from slot 0 with nothing padded).
    Left-padding slots are masked out; a padding query attends to itself only, so its (unused)
    output stays finite instead of NaN.
    """
    q = slots[:, None]
    k = torch.arange(n_keys, device=slots.device)[None, :]
    mask = k <= q  # (T, S)
    if pad is not None:
        mask = (mask & (k >= pad[:, None, None, None])) | (k == q)  # (B, 1, T, S)
    return mask
