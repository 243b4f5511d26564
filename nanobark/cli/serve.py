"""`nanobark serve`: the OpenAI-compatible speech API (nanobark/serve/), on uvicorn.

The arguments are read and checked first (no torch, no FastAPI: --help answers at once); the server then
listens at once and loads the model on its own thread (/health says 503 until it is loaded). SIGTERM or
Ctrl-C: no new connections, the requests in flight finish, exit 0; a second signal exits at once.
"""

import ipaddress
import logging
import os
import socket
import sys
import threading
import time

from .parser import EXIT_CODES, Parser, at_least_1, checked, device_options, model_options, run_options
from .speak import check_cloning_weights, check_model, check_runtime

EXTRA = 'nanobark serve needs the server stack: pip install "nanobark[serve]"'


def not_negative(value, name):
    if not value >= 0:  # NaN too
        raise ValueError(f"{name} must be 0 or more, got {value}")
    return value


def serve_parser():
    # fmt: off
    p = Parser(prog="nanobark serve", epilog=EXIT_CODES,
               parents=[model_options(), device_options(), run_options()],
               description="Serve OpenAI's speech API (POST /v1/audio/speech) and a page to try it at /. Requests "
               "that wait together are generated as one batch.")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="the port to listen on")
    p.add_argument("--offload", action="store_true", help="GPU: keep the models on the CPU and move each stage "
                   "to the GPU in turn (less GPU memory)")
    p.add_argument("--max-batch", type=checked(int, at_least_1, "--max-batch"), default=8,
                   help="most segments generated together (1: one at a time)")
    p.add_argument("--max-wait-ms", type=checked(float, not_negative, "--max-wait-ms"), default=50.0,
                   help="how long a batch waits for company before it starts")
    p.add_argument("--max-queue", type=checked(int, at_least_1, "--max-queue"), default=64,
                   help="most requests in at once (generating or waiting); more get 429 with Retry-After")
    p.add_argument("--api-key", default=os.environ.get("NANOBARK_API_KEY") or None,
                   help="require `Authorization: Bearer KEY` on /v1/ (default: $NANOBARK_API_KEY, else none)")
    p.add_argument("--voices-dir", help="where cloned voices are kept (default: voices/ in nanobark's cache)")
    p.add_argument("--quantizer", help="cloning: a quantizer file (default: the English one, downloaded)")
    p.add_argument("--hubert", help="cloning: a local copy of HuBERT base (default: downloaded)")
    # fmt: on
    return p


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve(argv):
    p = serve_parser()
    args = p.parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError:
        print(EXTRA, file=sys.stderr)
        return 2
    from ..weights.hub import cache_root

    device = check_runtime(p, args)
    args.voices_dir = args.voices_dir or os.path.join(cache_root(), "voices")
    try:
        check_model(args.model)
        check_cloning_weights(args.quantizer, args.hubert)
        os.makedirs(args.voices_dir, exist_ok=True)
    except (ValueError, OSError) as e:
        p.error(str(e))
    if not is_loopback(args.host) and args.api_key is None:
        print(
            f"warning: listening on {args.host} without an API key: anyone who can reach port {args.port} can "
            "use this machine's compute and fill --voices-dir with voices; set --api-key or NANOBARK_API_KEY",
            file=sys.stderr,
        )
    from ..bark import Bark
    from ..serve.app import create_app
    from ..serve.server import Server
    from ..serve.store import VoiceStore
    from ..serve.worker import Worker

    log = logging.getLogger("nanobark.serve")
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nanobark: %(message)s"))
    log.addHandler(handler)

    try:  # bound here, before the model loads, so that a port in use is one line and exit 1
        sock = listen(args.host, args.port)
    except OSError as e:
        print(
            f"nanobark: error: cannot listen on {args.host}:{args.port}: {e.strerror}; pick another --port",
            file=sys.stderr,
        )
        return 1
    port = sock.getsockname()[1]  # --port 0: the port the system gave
    url = f"http://{args.host}:{port}"

    def load():
        t0 = time.perf_counter()
        bark = Bark.from_pretrained(args.model, device=device, dtype=args.dtype, offload=args.offload, int8=args.int8)
        log.info("%s loaded in %.1f s; ready at %s", args.model, time.perf_counter() - t0, url)
        return bark

    worker = Worker(load, args.max_batch, args.max_wait_ms / 1000, args.max_queue)
    clone_options = {"quantizer": args.quantizer, "hubert": args.hubert}
    app = create_app(worker, VoiceStore(args.voices_dir), args.model, args.api_key, clone_options)
    server = Server(uvicorn.Config(app, host=args.host, port=port, log_level="warning" if args.quiet else "info"))
    log.info("listening on %s (the model loads; /health says when it is ready)", url)
    worker.start()
    threading.Thread(target=stop_if_failed, args=(worker, server), daemon=True).start()
    server.run(sockets=[sock])
    if worker.error is not None:
        print(f"nanobark: error: loading the model failed: {worker.error}", file=sys.stderr)
        return 1
    return 0


def listen(host, port):
    """A listening TCP socket on host:port (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def stop_if_failed(worker, server):
    worker.ready.wait()
    if worker.error is not None:
        server.should_exit = True
