"""Progress on standard error: a tqdm bar on a terminal, one plain line per finished job elsewhere.

    report = progress_bar("semantic", "tokens")   # -> report(done, total)
    report(12, 768) ... report(150, 150)          # the bar ends where the work did

A log file or a CI job reading stderr gets "semantic: 150 tokens in 3.2 s" instead of a stream of carriage
returns. `transient` bars (the stages inside a long-form segment) vanish when done on a terminal and print
nothing elsewhere: the caller's own bar (segments, n of N) says what was done.
"""

import sys
import time

from tqdm import tqdm


def progress_bar(desc, unit, transient=False):
    """A progress(done, total) callback; the bar closes, or its line is printed, once done >= total."""
    if not sys.stderr.isatty():
        return _quiet if transient else _line(desc, unit)
    bar = tqdm(total=0, desc=desc, unit=f" {unit}", leave=not transient, dynamic_ncols=True)

    def progress(done, total):
        if bar.disable:  # closed: a stage may report its end twice
            return
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def _quiet(done, total):
    pass


def _line(desc, unit):
    start, finished = time.perf_counter(), False

    def progress(done, total):
        nonlocal finished
        if done >= total and not finished:
            finished = True
            print(f"{desc}: {total} {unit} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    return progress


def counter(desc, unit, total):
    """A bar over `total` items (long-form segments) with an estimate of the time left: -> advance(n=1)."""
    start, done = time.perf_counter(), 0
    bar = tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True) if sys.stderr.isatty() else None

    def advance(n=1):
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
            if done >= total:
                bar.close()
            return
        elapsed = time.perf_counter() - start
        eta = f", about {elapsed / done * (total - done):.0f} s left" if done < total else ""
        print(f"{desc}: {done} of {total} {unit}s done in {elapsed:.1f} s{eta}", file=sys.stderr, flush=True)

    return advance
