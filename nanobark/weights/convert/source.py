"""A source state dict that the key tables take tensors out of, one by one.

Taking (rather than reading) lets the converter report, at the end and all at once,
what was missing, what had the wrong shape, and what was left over unused.
"""

import torch


class ConversionError(ValueError):
    pass


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
            problems.append(
                f"wrong shape/dtype for {len(self.misshaped)} tensor(s): " + _short(self.misshaped)
            )
        if self.sd:
            problems.append(f"unexpected {len(self.sd)} tensor(s): " + _short(sorted(self.sd)))
        if problems:
            lines = "\n  ".join(problems)
            raise ConversionError(
                f"{self.origin} does not match the expected layout:\n  {lines}\n{self.hint}"
            )


def _short(names, n=8):
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")
