"""CPU speed: how the GPTs' weights sit in memory for decoding. Applied from outside the models, by the API.

Decoding one token reads every weight once (about 340 MB per step for bark-small in float32), so on a
CPU the decode loop is bound by memory traffic. Two ways to read less, or read faster:

- lay_out_weights: at batch 1-2 a decode step is a matrix-vector product per layer, and CPU BLAS streams
  a widening weight stored transposed ((in, out) rows, still seen as the usual (out, in) Parameter) ~1.5x
  faster than torch's own layout (measured 18-20 vs 13 GB/s on a 2-core EPYC); from batch ~4 on, and for
  the narrowing MLP output, the usual layout is faster. Same values; only the summation order changes.
- quantize_int8_: int8 Linear weights (one scale per output channel) read 4x fewer bytes in the memory-bound
  decode steps, through fbgemm's dynamic int8 kernel (it quantizes each activation row on the fly; on the CPUs
  we measured it is the only int8 matmul in stock PyTorch that beats float32 at batch 1). Wide inputs (a
  prefill, a fine pass) are compute-bound instead: where the CPU multiplies bfloat16 natively (AMX or
  AVX512-BF16) they run on a bfloat16 copy of the weights, and keys, values and attention are bfloat16 too
  (half the cache bytes a step reads). Tokens can differ from float32; tests/test_fast.py states the
  agreement floor.
"""

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def lay_out_weights(model, batch_size):
    """Lay the Linear weights of `model` out in memory for the batch size about to decode (CPU only).

    Re-laying costs one copy of the weights, and only when the batch size crosses the threshold.
    """
    small_batch_cpu = next(model.parameters()).device.type == "cpu" and batch_size <= 2
    for m in model.modules():
        if not isinstance(m, nn.Linear):  # an int8 Linear is another class, with its own packed layout
            continue
        # the widening matrices (q/k/v, MLP in, the head) gain; the narrowing MLP out does not
        transposed = small_batch_cpu and m.out_features >= m.in_features
        if m.weight.is_contiguous() == transposed:
            # swap the storage under the same Parameter, so references to it stay valid
            m.weight.data = m.weight.t().contiguous().t() if transposed else m.weight.contiguous()


# oneDNN's bfloat16 GEMM slows ~1.8x from 704 to 1024 rows for the narrowing MLP output (3072 -> 768; 1.6 TFLOP/s
# up to 640 rows, 0.9 from 704, measured on this CPU, docs/benchmarks.md): a narrowing product of more than
# SLOW_ROWS rows runs in chunks of CHUNK_ROWS (fewer rows run whole: chunks would only add calls)
SLOW_ROWS, CHUNK_ROWS = 640, 512
WIDE_ROWS = 32  # inputs with at least this many rows (batch x tokens) take the bfloat16 copy, when there is one


def native_bf16():
    """Does this CPU multiply bfloat16 in hardware (AMX tiles or AVX512-BF16)? Then bf16 GEMMs beat int8 ones."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights for decode steps and, optionally, a bfloat16 copy for wide inputs.

    Measured on a 2-core Xeon with AMX (docs/benchmarks.md): one decode step's (1, 768) x (768, 3072) product
    takes 0.19 ms in int8 against 0.32 ms in float32 and 0.39 ms in bfloat16 (weight bytes are what count);
    an 887-row prefill's takes 3.9 ms in int8, 11.6 ms in float32 and 2.0 ms in bfloat16 (arithmetic counts).
    """

    def __init__(self, linear, steps=True, wide=True):
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.packed, self._packed_rows = None, {}
        if steps:  # symmetric per-row scales: the largest |w| of each output row maps to 127.5
            scale = (w.abs().amax(dim=1) / 127.5).clamp(min=torch.finfo(torch.float32).eps).double()
            with warnings.catch_warnings():  # quantized tensors are deprecated; fbgemm's kernel still takes them
                warnings.simplefilter("ignore")
                q = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, bias)
        self.register_buffer("wide", w.bfloat16() if wide else None, persistent=False)
        self.register_buffer("wide_bias", bias.bfloat16() if wide and bias is not None else None, persistent=False)

    def forward(self, x, rows=None):
        """x (..., in) float32 or bfloat16 -> (..., out), or (..., len(rows)) for the output rows in the slice `rows`.

        Wide inputs give bfloat16, from the bfloat16 copy; it goes on as it is (GELU, attention and the next Linear
        read it without a copy back), and the residual stream stays float32, since float32 + bfloat16 adds in
        float32. Narrow ones give float32, from the int8 kernel."""
        if self.wide is not None and (self.packed is None or x.numel() >= WIDE_ROWS * self.in_features):
            w, b = (
                (self.wide, self.wide_bias)
                if rows is None
                else (self.wide[rows], None if self.wide_bias is None else self.wide_bias[rows])
            )
            x = x.to(torch.bfloat16)
            if self.in_features > self.out_features and x.numel() > SLOW_ROWS * self.in_features:  # see SLOW_ROWS
                rows2d = x.reshape(-1, self.in_features)
                return torch.cat([F.linear(c, w, b) for c in rows2d.split(CHUNK_ROWS)]).view(*x.shape[:-1], -1)
            return F.linear(x, w, b)
        packed = self.packed if rows is None else self._rows(rows)
        # reduce_range: 7-bit activations, as torch.ao sets for fbgemm (its VNNI sums cannot overflow then)
        return torch.ops.quantized.linear_dynamic.default(x.float(), packed, True)  # .default: no Python checks

    def _rows(self, rows):
        """The int8 weights of the output rows in `rows` packed on their own, once: the coarse stage reads one
        codebook's 1024 head rows of 12096 a step (a tenth of the bytes)."""
        key = (rows.start, rows.stop)
        if key not in self._packed_rows:
            weight, bias = torch.ops.quantized.linear_unpack(self.packed)
            self._packed_rows[key] = torch.ops.quantized.linear_prepack(
                weight[rows], None if bias is None else bias[rows]
            )
        return self._packed_rows[key]

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, wide={self.wide is not None}"


@torch.no_grad()
def quantize_int8_(model, steps=None, wide=None):
    """Replace every nn.Linear of `model` (in place) with an Int8Linear; CPU only. Returns the model.

    steps: keep int8 weights for decode steps (None: if the model decodes one token at a time, i.e. has a KV
    cache to set up; the fine GPT's passes are all wide, and a bfloat16 copy runs them). wide: keep a bfloat16
    copy for wide inputs and run attention in bfloat16 (None: where the CPU multiplies bfloat16 natively, see
    native_bf16).
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; load the model with device='cpu'")
    wide = native_bf16() if wide is None else wide
    steps = hasattr(model, "setup_cache") if steps is None else steps
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"  # fbgemm's kernels
    model.float()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child, steps=steps or not wide, wide=wide))
        if wide and hasattr(module, "kv_dtype"):
            module.kv_dtype = torch.bfloat16
    return model
