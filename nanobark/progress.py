"""Progress on standard error: a tqdm bar on a terminal, plain lines elsewhere.

    report = progress_bar("semantic", "tokens")   # -> report(done, total)
    report(12, 768) ... report(150, 150)          # the bar ends where the work did

A log file or a CI job reading stderr gets "semantic: 150 tokens in 3.2 s" instead of a stream of carriage
returns, and a line a minute while a stage runs longer ("semantic: 300 tokens so far, 60 s"), so that long
work is never silent there. `transient` bars (the stages inside a long-form segment) vanish when done on a
terminal, under the caller's own bar (segments, n of N); elsewhere their lines are indented under it.
"""

import sys
import time

from tqdm import tqdm

HEARTBEAT = 60.0  # seconds between two lines of a stage still running, where there is no bar
# tqdm's own rate switches to "3.55s/ windows" below 1 a second; this one reads "0.28 windows/s" always
BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


def _bar(desc, unit, total, leave=True):
    return tqdm(total=total, desc=desc, unit=f" {unit}", leave=leave, dynamic_ncols=True, bar_format=BAR)


def progress_bar(desc, unit, transient=False):
    """A progress(done, total) callback; the bar closes, or its line is printed, once done >= total."""
    if not sys.stderr.isatty():
        return _line(("  " if transient else "") + desc, unit)
    bar = _bar(desc, unit, 0, leave=not transient)

    def progress(done, total):
        if bar.disable:  # closed: a stage may report its end twice
            return
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def _line(desc, unit):
    start = last = time.perf_counter()
    finished = False

    def progress(done, total):
        nonlocal finished, last
        now = time.perf_counter()
        if done >= total and not finished:
            finished = True
            print(f"{desc}: {total} {unit} in {now - start:.1f} s", file=sys.stderr, flush=True)
        elif not finished and now - last >= HEARTBEAT:
            last = now
            print(f"{desc}: {done} {unit} so far, {now - start:.0f} s", file=sys.stderr, flush=True)

    return progress


def counter(desc, unit, total):
    """A bar over `total` items (long-form segments) with an estimate of the time left: -> advance(n=1)."""
    start, done = time.perf_counter(), 0
    bar = _bar(desc, f"{unit}s", total) if sys.stderr.isatty() else None

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


def close_bars():
    """Erase the bars still drawn (a Ctrl-C stopped their work), so that the message printed next is the last
    line: left open, a bar is drawn again below it when it is garbage-collected."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.leave = False
        bar.close()
