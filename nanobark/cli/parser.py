"""What every `nanobark` command's parser shares: the Parser, its help layout, the exit codes, the option blocks.

No torch here, nor in any parser: --help, --version and the errors argparse finds answer at once; the
commands import the models once the arguments are read.
"""

import argparse
from dataclasses import fields

from ..settings import LONG_FORM, Settings

EXIT_CODES = """exit codes:
  0    done
  1    the work failed (a damaged model, a full disk, no network for a first download, ...)
  2    bad arguments, found before any model is loaded
  130  stopped by Ctrl-C; 143 by SIGTERM; 129 by SIGHUP (nothing half-written is left)
  141  the program reading standard output stopped reading (as for SIGPIPE)"""
DTYPES = ("float32", "float16", "bfloat16")  # device.DTYPES' names (device.py imports torch)


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse prints each default; descriptions and epilogs keep their lines. An option that is off unless
    given (None, False) has no default worth printing: its help says what it does."""

    def _get_help_string(self, action):
        off = action.default is None or action.default is False  # not `in (None, False)`: 0 == False
        return action.help if off else super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming --help (the usage summary of 25 options would bury it), and exit 2."""

    def __init__(self, **kwargs):
        super().__init__(formatter_class=Help, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checked(convert, check, flag):
    """An argparse type: convert the text, then the library's own check, its message naming the flag."""

    def parse(text):
        value = convert(text)  # a ValueError here is argparse's "invalid float value"
        try:
            return check(value, name=flag)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = convert.__name__
    return parse


def at_least_1(value, name):
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


# ---------------------------------------------------------------- the shared option blocks (parents=)


def model_options(help="suno/bark-small, suno/bark, or a local folder"):
    p = Parser(add_help=False)
    p.add_argument("--model", default="suno/bark-small", help=help)
    return p


def device_options(note="", precision=True):
    """--device, and unless precision=False, --dtype and --int8 (for the three GPTs)."""
    p = Parser(add_help=False)
    # fmt: off
    p.add_argument("--device", help=f"cpu, cuda, cuda:1, mps (default: cuda if available, else cpu{note})")
    p.add_argument("--threads", type=checked(int, at_least_1, "--threads"),
                   help="CPU threads for torch (default: one per core); on a shared machine or under torchrun, "
                   "1 or 2 per process is faster than threads that fight over the same cores")
    if precision:
        p.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="precision of the three GPTs; half precision is for GPUs")
        p.add_argument("--int8", action="store_true", help="CPU only: int8 weights for the three GPTs, ~2x faster")
    # fmt: on
    return p


def cloning_options():
    """--quantizer and --hubert: the weights that make a recording's semantic ids (clone, prepare)."""
    p = Parser(add_help=False)
    # fmt: off
    p.add_argument("--quantizer", help="a quantizer file (e.g. one trained for another language), or the name of "
                   "another file in the quantizers' Hub repository (default: the English one, downloaded)")
    p.add_argument("--hubert", help="a local copy of HuBERT base (default: downloaded)")
    # fmt: on
    return p


def run_options():
    p = Parser(add_help=False)
    p.add_argument("--quiet", action="store_true", help="no progress bars (the result is still printed)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def sampling_options(title, long_items):
    """A flag per Settings field (--text-temp is text_temp), with its default and check. min_eos_p's default
    depends on the form (one generation or long form), so the flag is None unless given."""
    p = Parser(add_help=False)
    group = p.add_argument_group(title)
    for f in fields(Settings):
        flag, default, help = "--" + f.name.replace("_", "-"), f.default, f.metadata["help"]
        if f.name == "min_eos_p":
            default, help = None, f"{help} (default: {f.default}, {LONG_FORM.min_eos_p} {long_items})"
        kind = checked(f.metadata["parse"], f.metadata["check"], flag)
        group.add_argument(flag, type=kind, default=default, help=help)
    return p


def generation_options(sampling_title, long_items, device_note=""):
    """The parents of a command that generates (speak, synthesize): sampling, model, device, run."""
    return [sampling_options(sampling_title, long_items), model_options(), device_options(device_note), run_options()]


def given_settings(args):
    """The Settings fields set on the command line (min_eos_p only if given): keywords for Settings."""
    values = {f.name: getattr(args, f.name) for f in fields(Settings)}
    return {k: v for k, v in values.items() if v is not None or k != "min_eos_p"}
