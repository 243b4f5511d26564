"""CPU speed: how the GPTs' weights sit in memory for decoding. Applied from outside the models, by the API.

Decoding one token reads every weight once (about 340 MB per step for bark-small in float32), so on a
CPU the decode loop is bound by memory traffic. Two ways to read less, or read faster:

- lay_out_weights: at batch 1-2 a decode step is a matrix-vector product per layer, and CPU BLAS streams
  a widening weight stored transposed ((in, out) rows, still seen as the usual (out, in) Parameter) ~1.5x
  faster than torch's own layout (measured 18-20 vs 13 GB/s on a 2-core EPYC); from batch ~4 on, and for
  the narrowing MLP output, the usual layout is faster. Same values; only the summation order changes.
- quantize_int8_: int8 Linear weights (one scale per output channel) read 4x fewer bytes. The kernel is
  fbgemm's dynamic int8 Linear (torch.ao), which also quantizes each activation row on the fly: on the
  CPUs we measured it is the only int8 matmul in stock PyTorch that beats float32 at batch 1
  (`aten._weight_int8pack_mm`, the weight-only kernel, was slower than float32). Tokens can differ from
  float32; tests/test_fast.py states the agreement floor.
"""

import warnings

import torch
import torch.nn as nn


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


def quantize_int8_(model):
    """Replace every nn.Linear of `model` (in place) with an int8 dynamic-quantized Linear; CPU only."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; load the model with device='cpu'")
    # torch.ao marks its eager API deprecated in favour of the torchao package
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"
        quantize_dynamic(model.float(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model
