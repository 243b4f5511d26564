"""Where the networks run: the device, the dtype and the int8 rule, each decided here once.

The API, the command and the corpus job all call these; a rule written twice is a rule that drifts.
"""

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_device():
    """The device nanobark runs on when none is named: the first CUDA GPU if torch sees one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device=None):
    """A torch.device this torch build can run nanobark on (None: default_device()), or one ValueError."""
    device = default_device() if device is None else device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{device!r} is not a device; use cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for but torch sees no CUDA GPU; use device='cpu', "
            "or install a CUDA build of torch (pytorch.org/get-started)"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "device 'mps' was asked for but this torch build has no MPS (Apple silicon, macOS 12.3+); use device='cpu'"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device.type!r} is not supported; use cpu, cuda or mps")
    return device


def set_threads(threads=None):
    """CPU threads for torch's kernels (None: torch's own choice, one per core)."""
    if threads is not None:
        torch.set_num_threads(threads)


def check_dtype(dtype=None):
    """None, a name ("float32", "float16", "bfloat16") or a torch.dtype -> the torch.dtype, or one ValueError."""
    dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype or torch.float32
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def check_int8(int8, device, dtype, compile=False):
    """int8 weights are for eager decoding on the CPU in float32 (fbgemm's kernels); anything else: one ValueError."""
    if int8 and (torch.device(device).type != "cpu" or check_dtype(dtype) != torch.float32):
        raise ValueError("int8 is for CPU decoding in float32; use the CPU and float32, or drop int8")
    if int8 and compile:  # it used to fail at the first decode step, deep inside torch._dynamo
        raise ValueError(
            "int8 does not combine with compile: torch.compile cannot trace fbgemm's int8 kernel; drop one"
        )
