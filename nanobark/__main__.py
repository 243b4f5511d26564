"""`nanobark` and `python -m nanobark`: the installed command (nanobark/cli.py does the work).

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
    from .cli import main as run  # torch and the models: the slow part

    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run()


if __name__ == "__main__":
    sys.exit(main())
