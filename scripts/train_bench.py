"""Benchmark training: tokens per second and peak memory of one optimizer step, per stage, at bark-small shapes.

    python scripts/train_bench.py                          # CPU, float32, batch 2, 3 timed steps after 1
    python scripts/train_bench.py --device cuda --dtype bfloat16 --batch-size 8
    python scripts/train_bench.py --tiny --steps 1         # smoke test: 2 layers, 32 wide

Nothing is downloaded: each stage is a randomly initialised model of bark-small's shapes (12 layers, 12 heads,
768 wide, Bark's vocabularies), trained on a random 8-second clip (400 semantic tokens, 600 codec frames, 40
text ids), in the layouts scripts/train.py uses (nanobark/train/sequences.py), without a voice. The examples
are pinned, since speed depends on the lengths and not on the values:
    semantic  the whole clip: 256 merged text+history positions, INFER, 400 tokens and EOS (401 targets)
    coarse    a late window: 256 semantic ids, INFER, 630 coarse ids of context, 60 targets (946 positions)
    fine      a middle window: 1024 frames, each of codebooks 2..7 predicted from those before (6 x 1024 targets)
A step is forward, backward, gradient clipping and AdamW over every parameter. Each stage runs in a process of
its own, so its peak memory is its own: CPU, peak RSS (VmHWM) minus RSS after the imports; CUDA,
torch.cuda.max_memory_allocated. "tokens/s" counts targets (positions that take a loss), "positions/s" the
positions the model runs over.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import bench  # scripts/bench.py: peak_rss_mib
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from nanobark.config import PRESETS  # noqa: E402
from nanobark.device import check_device  # noqa: E402
from nanobark.train.data import Clip  # noqa: E402
from nanobark.train.loss import StageLoss, count_targets  # noqa: E402
from nanobark.train.optim import build, make_optimizer  # noqa: E402
from nanobark.train.sequences import coarse_example, coarse_windows, collate, fine_example, semantic_example  # noqa: E402

STAGES = ("semantic", "coarse", "fine")


def example(stage):
    rng = np.random.default_rng(0)
    clip = Clip("bench", rng.integers(0, 1000, 40), rng.integers(0, 10_000, 400), rng.integers(0, 1024, (8, 600)))
    if stage == "semantic":
        return semantic_example(clip, None)
    if stage == "coarse":
        return coarse_example(clip, None, coarse_windows(clip) - 2)  # the context is full by then
    return fine_example(clip, None, 0)  # 600 frames: one window of 1024, padded


def positions(stage, batch):
    if stage == "semantic":
        return batch["ids"].numel() + batch["text"].numel()
    return batch["ids"][..., 0].numel() if stage == "fine" else batch["ids"].numel()


def worker(args):
    torch.set_num_threads(args.threads)
    device = check_device(args.device)
    base = bench.peak_rss_mib()
    sizes = dict(n_layer=2, n_head=2, n_embd=32) if args.tiny else {}
    config = PRESETS["bark-small"]()
    model, _ = build(args.stage, config, sizes=sizes or dict(n_layer=12, n_head=12, n_embd=768))
    model.to(device)
    loss_fn = StageLoss(args.stage, model)
    optimizer = make_optimizer(model, 1e-4, 0.1, (0.9, 0.95), device.type)
    batch = {k: v.to(device) for k, v in collate([example(args.stage)] * args.batch_size).items()}
    autocast = torch.autocast(device.type, getattr(torch, args.dtype), enabled=args.dtype != "float32")
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast:
            loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else bench.peak_rss_mib() - base
    row = dict(
        stage=args.stage,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        step_s=step,
        tokens_s=count_targets(batch) / step,
        positions_s=positions(args.stage, batch) / step,
        peak_mib=peak,
    )
    print(json.dumps(row))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=STAGES, help="run one stage in this process (the parent runs each)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--tiny", action="store_true", help="2 layers, 32 wide: a smoke test")
    args = p.parse_args(argv)
    if args.stage:
        return worker(args)
    rows = []
    for stage in STAGES:
        cmd = [sys.executable, __file__, "--stage", stage, *(argv if argv is not None else sys.argv[1:])]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    mem = "GPU" if args.device.startswith("cuda") else "RSS"
    print(f"{args.device} {args.dtype}, batch {args.batch_size}, {args.threads} threads, median of {args.steps}")
    print(f"| stage | params (M) | step s | tokens/s | positions/s | peak MiB ({mem}) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['params_m']:.1f} | {r['step_s']:.2f} | {r['tokens_s']:.0f} | "
            f"{r['positions_s']:.0f} | {r['peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
