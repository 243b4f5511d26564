"""Optional int8 weights for CPU decoding.

Decoding one token reads every weight once (about 340 MB per step for bark-small in float32),
so on a CPU the decode loop is bound by memory traffic. Storing the Linear weights as int8
(one scale per output channel) reads 4x fewer bytes. The kernel is fbgemm's dynamic int8
Linear (torch.ao), which also quantizes each activation row on the fly: on the CPUs we
measured it is the only int8 matmul in stock PyTorch that beats float32 at batch 1
(`aten._weight_int8pack_mm`, the weight-only kernel, was slower than float32). Tokens can
differ from float32; scripts/benchmark.py --agreement reports how often.
"""
import warnings

import torch
import torch.nn as nn


def quantize_int8_(model):
    """Replace every nn.Linear of `model` (in place) with an int8 dynamic-quantized Linear; CPU only."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; load the model with device='cpu'")
    with warnings.catch_warnings():  # torch.ao marks its eager API deprecated in favour of the torchao package
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"
        quantize_dynamic(model.float(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model
