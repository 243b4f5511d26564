"""Serving benchmark: requests per minute and time to first and last byte of `nanobark serve`, at 1, 4 and 8
concurrent clients, batching on (--max-batch 8) and off (--max-batch 1); then one long text's first byte.

    python scripts/serve_bench.py                       # random weights with bark-small's shapes (built once)
    python scripts/serve_bench.py --size tiny           # 2 layers, 32 wide: a smoke test
    python scripts/serve_bench.py --model FOLDER        # a real model

Nothing is downloaded. The script starts the server itself on 127.0.0.1 (port 0), once per mode, and each
client sends --requests requests one after the other (streamed pcm, seeded, each text capped at
--max-duration seconds of speech, so every request makes about the same work). Model loading and one
warm-up request are not timed. Requests per minute = requests done / wall time of the level.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
TEXTS = [
    "Hello, my dog is cute.",
    "The world is round and blue.",
    "She said hello and laughed.",
    "It rained all day in the city.",
    "We walked home after dinner.",
    "The train was late again today.",
    "He plays the piano every night.",
    "Good morning, how are you?",
]
LONG = " ".join(TEXTS[:4])  # four sentences: spoken as segments with `long`


def build(size, folder):
    """Random weights of `size` in folder/nanobark (built once, kept for the next run)."""
    model = os.path.join(folder, "nanobark")
    if not os.path.isfile(os.path.join(model, "config.json")):
        import bench

        bench.build_weights(folder, size)
    return model


def start(model, max_batch, args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "nanobark", "serve", "--model", model, "--port", "0", "--max-batch", str(max_batch)]
    cmd += ["--max-wait-ms", str(args.max_wait_ms), "--quiet", "--threads", str(args.threads)]
    log = open(os.path.join(args.workdir, f"server_batch{max_batch}.log"), "w")
    p = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    while True:
        text = open(log.name).read()
        found = re.search(r"ready at http://127\.0\.0\.1:(\d+)", text)
        if found or p.poll() is not None:
            break
        time.sleep(0.2)
    if not found:
        raise SystemExit(f"the server did not start:\n{text}")
    return p, int(found[1])


def speak(port, text, seed, args, long=False):
    """One streamed request -> (seconds to the first byte, seconds to the last, bytes)."""
    body = {"model": "tts-1", "input": text, "voice": args.voice, "response_format": "pcm"}
    body.update(stream_format="audio", seed=seed, max_duration=args.max_duration, long=long)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    first, size = None, 0
    while chunk := r.read1(65536):
        first = first or time.perf_counter() - t0
        size += len(chunk)
    conn.close()
    if r.status != 200:
        raise SystemExit(f"request failed: {r.status}")
    return first, time.perf_counter() - t0, size


def level(port, clients, args):
    """`clients` threads, each sending --requests requests -> (requests per minute, [(ttfb, ttlb)])."""
    times, lock = [], threading.Lock()

    def client(c):
        for k in range(args.requests):
            first, last, _ = speak(port, TEXTS[(c + k) % len(TEXTS)], 1 + c * 100 + k, args)
            with lock:
                times.append((first, last))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(times) * 60 / (time.perf_counter() - t0), times


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a model folder (default: random weights of --size)")
    p.add_argument("--size", default="small", choices=("tiny", "small"))
    p.add_argument("--workdir", default="/tmp/nanobark_serve_bench")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=2, help="requests per client per level")
    p.add_argument("--max-duration", type=float, default=0.5, help="seconds of speech per text, at most")
    p.add_argument("--max-wait-ms", type=float, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--voice", default="v2/en_speaker_6", help="a preset; random: no voice prompt")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model = args.model or build(args.size, os.path.join(args.workdir, args.size))
    rows, results = [], {}
    # both servers up at once, and each level measured on one then the other: on a shared machine the load
    # drifts, and it then drifts alike for both
    servers = {max_batch: start(model, max_batch, args) for max_batch in (8, 1)}
    try:
        for _, port in servers.values():
            speak(port, TEXTS[0], 0, args)  # warm-up
        for clients in args.clients:
            for max_batch, (_, port) in servers.items():
                rpm, times = level(port, clients, args)
                first, last = [t[0] for t in times], [t[1] for t in times]
                results[(max_batch, clients)] = rpm
                row = (max_batch, clients, len(times), rpm, pct(first, 0.5), pct(first, 0.95))
                rows.append(row + (pct(last, 0.5), pct(last, 0.95)))
                print(
                    "batch %d, %d clients: %d requests, %.1f/min, first byte p50 %.2f p95 %.2f s, "
                    "last byte p50 %.2f p95 %.2f s" % rows[-1],
                    flush=True,
                )
        port = servers[8][1]
        one = statistics.median(speak(port, TEXTS[1], 7, args)[1] for _ in range(2))
        first, last, _ = speak(port, LONG, 7, args, long=True)
        long_row = (one, first, last)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait()
    rows.sort(key=lambda r: (-r[0], r[1]))
    print("\n| --max-batch | clients | requests | requests/min | first byte p50 / p95 s | last byte p50 / p95 s |")
    print("|---|---|---|---|---|---|")
    for b, c, n, rpm, f50, f95, l50, l95 in rows:
        print(f"| {b} | {c} | {n} | {rpm:.1f} | {f50:.2f} / {f95:.2f} | {l50:.2f} / {l95:.2f} |")
    for clients in args.clients:
        print(
            f"\n{clients} clients: batching gives {results[(8, clients)] / results[(1, clients)]:.2f}x the "
            "requests per minute of one at a time",
            end="",
        )
    one, first, last = long_row
    print(
        f"\nlong text of 4 segments: first byte after {first:.2f} s (one segment alone: {one:.2f} s), "
        f"last byte after {last:.2f} s"
    )


if __name__ == "__main__":
    main()
