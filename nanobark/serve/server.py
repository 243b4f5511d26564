"""uvicorn, with the command's signals: SIGTERM (or Ctrl-C, SIGHUP) stops taking connections and lets the
requests in flight finish, then the command exits 0; a second signal exits at once (128 + its number)."""

import contextlib
import os
import signal
import sys

import uvicorn

SIGNALS = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn's own raises the signal again once it has stopped, which would end the command 143."""
        before = {s: signal.signal(s, self.handle_exit) for s in SIGNALS}
        try:
            yield
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    def handle_exit(self, sig, frame):
        if self.should_exit:
            print("nanobark: stopped at once", file=sys.stderr, flush=True)
            os._exit(128 + sig)
        name = signal.Signals(sig).name
        print(f"nanobark: {name}: no new requests; finishing those in flight (again: stop at once)", file=sys.stderr)
        self.should_exit = True
