"""A source state dict that the key tables take tensors out of, one by one.

Taking (rather than reading) lets the converter report, at the end and all at once,
what was missing, what had the wrong shape, and what was left over unused.
"""

import torch


class ConversionError(ValueError):
    pass


def expected_shapes(model_class, cfg):
    """{nanobark name: shape} of model_class(cfg), built on the meta device (no weights allocated): what the key
    tables look up, with the shape it must have."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in model_class(cfg).state_dict().items()}


BARK_HINT = "Is this the right checkpoint for the chosen model size (bark-small vs bark)?"


class Source:
    def __init__(self, state_dict, origin, hint=BARK_HINT):
        self.sd = dict(state_dict)  # name -> tensor
        self.origin = origin  # for error messages: a file path or a description
        self.hint = hint  # the last line of the error: what the mismatch most likely means
        self.missing, self.misshaped = [], []

    def has(self, key):
        return key in self.sd

    def take(self, key, shape=None):
        """Remove and return `key` as a float32 tensor; record a miss or a bad shape (and return None)."""
        if key not in self.sd:
            self.missing.append(key)
            return None
        t = self.sd.pop(key)
        if not isinstance(t, torch.Tensor):
            self.misshaped.append(f"{key}: not a tensor ({type(t).__name__})")
            return None
        if shape is not None and tuple(t.shape) != tuple(shape):
            self.misshaped.append(f"{key}: shape {tuple(t.shape)}, expected {tuple(shape)}")
            return None
        if not t.is_floating_point():
            self.misshaped.append(f"{key}: dtype {t.dtype}, expected a floating-point tensor")
            return None
        return t.float()

    def take_weight_norm(self, key, shape, dim):
        """Take a weight-normed conv's g and v and fold them into its plain weight: w = g * v / ||v||, the norm
        over every dim but `dim` (torch._weight_norm, what the references compute). `key` is the conv's name."""
        g_name, v_name = "weight_g", "weight_v"  # the Hub files, fairseq, encodec, transformers 4.x
        if self.has(f"{key}.parametrizations.weight.original0"):  # a fresh transformers 5.x model
            g_name, v_name = "parametrizations.weight.original0", "parametrizations.weight.original1"
        g_shape = [1] * len(shape)
        g_shape[dim] = shape[dim]
        g, v = self.take(f"{key}.{g_name}", g_shape), self.take(f"{key}.{v_name}", shape)
        return None if g is None or v is None else torch._weight_norm(v, g, dim)

    def discard(self, predicate):
        """Drop keys we know and do not need (e.g. causal-mask buffers, unused codebooks)."""
        for k in [k for k in self.sd if predicate(k)]:
            del self.sd[k]

    def finish(self):
        """Raise one ConversionError naming every problem, or do nothing if the source was used up exactly."""
        problems = []
        if self.missing:
            problems.append(f"missing {len(self.missing)} tensor(s): " + _short(self.missing))
        if self.misshaped:
            problems.append(f"wrong shape/dtype for {len(self.misshaped)} tensor(s): " + _short(self.misshaped))
        if self.sd:
            problems.append(f"unexpected {len(self.sd)} tensor(s): " + _short(sorted(self.sd)))
        if problems:
            lines = "\n  ".join(problems)
            raise ConversionError(f"{self.origin} does not match the expected layout:\n  {lines}\n{self.hint}")


def _short(names, n=8):
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")
