"""`nanobark` and `python -m nanobark`: the installed command (nanobark/cli/ does the work).

A Ctrl-C while torch loads (a second or two) ends the program quietly with 130, not with a traceback of
the import machinery; once the command runs, nanobark.cli handles signals itself.
"""

import signal
import sys


def _interrupted_early(signum, frame):
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)


def main():
    signal.signal(signal.SIGINT, _interrupted_early)
    from .cli import main as run  # numpy, tokenizers; the commands import torch once their arguments are read

    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run()


if __name__ == "__main__":
    sys.exit(main())
