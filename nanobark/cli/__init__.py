"""The `nanobark` command: speak a text, list the voices, clone a voice, convert a checkpoint, synthesize a corpus.

    nanobark "Hello, my dog is cute" --out hello.wav       speak.py
    nanobark voices --language fr                           speak.py
    nanobark clone me.wav --out me.npz                      speak.py
    nanobark convert SNAPSHOT_FOLDER OUT_FOLDER             convert.py
    torchrun --nproc_per_node=8 -m nanobark synthesize corpus.jsonl --out-dir out    synthesize.py
    nanobark serve --port 8000                               serve.py (OpenAI's speech API)

Every argument is checked before a model is loaded, with the library's own checks, and a bad one exits 2
with one line (parser.py); a failure while working exits 1; a signal exits 128 + its number, leaving nothing
half-written. `nanobark.__main__` is the installed entry point (it catches a Ctrl-C while this loads).
"""

import os
import signal
import sys
import warnings

from . import convert, serve, speak, synthesize

# A first argument naming a command picks it; anything else is a text to speak. add_subparsers cannot do this:
# its first positional must be one of the commands, so `nanobark "Hello"` would be an error.
COMMANDS = {
    "voices": speak.voices,
    "clone": speak.clone,
    "convert": convert.convert,
    "synthesize": synthesize.synthesize,
    "serve": serve.serve,
}
FAILED, INTERRUPTED, BROKEN_PIPE = 1, 130, 141  # parser.EXIT_CODES: 128 + SIGINT, 128 + SIGPIPE


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it cleans up (temporary files) as on Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv=None):
    """The `nanobark` command -> exit code. argparse exits 2 itself on a usage error."""
    if sys.stderr is None:  # standard error closed (`2>&-`): print(file=None) would write into stdout's audio
        sys.stderr = open(os.devnull, "w")  # the lowest free fd: 2 itself
    argv = sys.argv[1:] if argv is None else list(argv)
    run = COMMANDS.get(argv[0] if argv else None)
    argv = argv[1:] if run else argv
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # no SIGHUP on Windows
        if sig is not None:
            signal.signal(sig, _stop)
    # read from argv, not from a parser: the handlers below serve every command, and each command parses alone
    debug = "--debug" in argv
    if not debug:  # a library warning (a clip outside the advised length, a text cut at 256 tokens): one line
        warnings.formatwarning = lambda message, *args, **kwargs: f"note: {message}\n"
    writes_stdout = "--out=-" in argv or any(a == "--out" and b == "-" for a, b in zip(argv, argv[1:]))
    try:
        return (run or speak.speak)(argv) or 0
    except BrokenPipeError:  # `nanobark voices | head -1`, or a player that quit: 141, as for SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        if writes_stdout:
            print("note: the reader of the audio stopped reading; the rest was not made", file=sys.stderr)
        return BROKEN_PIPE
    except KeyboardInterrupt as e:
        done = "the audio streamed so far was written" if writes_stdout else "nothing was written"
        print(f"interrupted; {done}", file=sys.stderr)
        return 128 + e.signum if isinstance(e, Stopped) else INTERRUPTED
    except Exception as e:
        if debug:
            raise
        print(f"nanobark: error: {str(e) or type(e).__name__}", file=sys.stderr)  # as argparse says it; never empty
        return FAILED
