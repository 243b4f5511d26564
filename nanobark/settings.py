"""The sampling and stopping settings of a generation: each default and each check written once, here.

    Settings()                          # Suno's defaults: text_temp=0.7, waveform_temp=0.7, fine_temp=0.5, ...
    replace(Settings(), top_k=50)       # checked on construction: a bad value raises ValueError naming it
    LONG_FORM                           # the same, with Suno's long-form min_eos_p=0.05

Bark.generate and its stages, generate_long and stream, the command's flags (--text-temp is text_temp), the
corpus manifest's columns and its resume record all take these names. No torch here: the command's parser
reads this module before torch has loaded.
"""

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Optional

MIN_TEMPERATURE = 1e-6  # far below any useful one; from ~1e-37 on, logits / temperature overflows float32
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's range starts there to wrap; a stated range reads better

# ---------------------------------------------------------------- checks
# `name` is the keyword (top_k) or, from the command line, the flag (--top-k), which cannot be None.


def _or_none(name):
    return "" if name.startswith("--") else " or None"


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{_or_none(name)}, got {value!r}")
    return value


def check_temperature(temp, name="temperature", allow_none=False):
    if temp is None and allow_none:
        return None
    if temp is not None and 0 < _number(name, temp) < MIN_TEMPERATURE:
        greedy = "--top-k 1" if name.startswith("--") else "top_k=1"
        raise ValueError(
            f"{name} {temp:g} is too small (logits / temperature would overflow): use at least "
            f"{MIN_TEMPERATURE:g}, or {greedy} for greedy decoding"
        )
    if temp is None or not _number(name, temp) > 0:
        hint = "" if name.startswith("--") else " (use None for argmax)" if allow_none else " (top_k=1 is greedy)"
        raise ValueError(f"{name} must be > 0, got {temp}{hint}")
    return temp


def check_fine_temperature(temp, name="temperature"):
    """The fine stage's temperature may be None: argmax."""
    return check_temperature(temp, name, allow_none=True)


def check_top_k(top_k, name="top_k"):
    if top_k is not None and (int(_number(name, top_k)) != top_k or top_k < 1):
        raise ValueError(f"{name} must be an integer >= 1{_or_none(name)}, got {top_k}")
    return top_k if top_k is None else int(top_k)


def check_top_p(top_p, name="top_p"):
    if top_p is not None and not 0 < _number(name, top_p) <= 1:
        raise ValueError(f"{name} must be in (0, 1]{_or_none(name)}, got {top_p}")
    return top_p


def check_min_eos_p(min_eos_p, name="min_eos_p"):
    if min_eos_p is not None and not 0 <= _number(name, min_eos_p) <= 1:
        raise ValueError(f"{name} must be in [0, 1]{_or_none(name)}, got {min_eos_p}")
    return min_eos_p


def check_max_duration(seconds, name="max_duration"):
    if seconds is not None and not _number(name, seconds) > 0:
        raise ValueError(f"{name} must be > 0 seconds{_or_none(name)}, got {seconds}")
    return seconds


def check_seed(seed, name="seed", n=1):
    """None, or an integer such that seed + n - 1 (the last sample's or segment's seed) is at most MAX_SEED."""
    if seed is None and not name.startswith("--"):
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED - (n - 1):
        extra = f" (item i of {n} uses seed + i)" if n > 1 else ""
        raise ValueError(f"{name} must be an integer from 0 to 2**63 - 1{extra}{_or_none(name)}, got {seed!r}")
    return int(seed)


def item_seed(seed, i):
    """Item i of a seeded batch, long text or server batch draws from seed + i: the same alone or batched."""
    return None if seed is None else seed + i


# ---------------------------------------------------------------- the settings


def _setting(default, parse, check, help):
    """A field with what the command line and the manifest need: how to read a string, the check, the help."""
    return field(default=default, metadata={"parse": parse, "check": check, "help": help})


@dataclass(frozen=True)
class Settings:
    # fmt: off
    text_temp: float = _setting(0.7, float, check_temperature, "semantic stage temperature")
    waveform_temp: float = _setting(0.7, float, check_temperature, "coarse stage temperature")
    fine_temp: Optional[float] = _setting(0.5, float, check_fine_temperature, "fine stage temperature")  # None: argmax
    top_k: Optional[int] = _setting(None, int, check_top_k, "sample only among the k most likely tokens (default: all)")
    top_p: Optional[float] = _setting(None, float, check_top_p, "nucleus sampling threshold in (0, 1] (default: off)")
    # None: stop only when the end of speech is drawn; long form starts from LONG_FORM's
    min_eos_p: Optional[float] = _setting(0.2, float, check_min_eos_p, "stop when P(end of speech) reaches this")
    max_duration: Optional[float] = _setting(  # seconds
        None, float, check_max_duration, "cap the semantic stage at about this many seconds of audio (default: none)")
    # fmt: on

    def __post_init__(self):
        """Every setting checked before any generation; the message names the first bad one."""
        for f in fields(self):
            value = f.metadata["check"](getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # top_k=2.0 is 2


# Suno's long-form notebook: min_eos_p=0.05 cuts the made-up tails that short segments invite
LONG_FORM = Settings(min_eos_p=0.05)


def defaults(long=False):
    """The settings a generation starts from: LONG_FORM for long form, else Settings()."""
    return LONG_FORM if long else Settings()
