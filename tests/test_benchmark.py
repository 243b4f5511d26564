"""Smoke test of scripts/benchmark.py: tiny GPTs, all three implementations, one timed call per row."""
import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "benchmark.py")


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "out.json"
    # one thread: on a busy 2-core CI machine two threads per process can make the run 10x slower
    cmd = [sys.executable, SCRIPT, "--tiny", "--reps", "1", "--warmup", "0", "--device", "cpu", "--threads", "1",
           "--batch-sizes", "1,2", "--ref-batch-sizes", "1", "--json", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "| nanobark | fp32 | 2 |" in p.stdout  # the markdown table

    result = json.loads(out.read_text())
    assert result["device"]["threads"] == 1 and result["device"]["torch"]
    rows = {(r["impl"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {("nanobark", 1), ("nanobark", 2), ("transformers", 1), ("suno", 1)}
    for r in rows.values():
        assert r["config"] == "fp32" and r["latency_s"] > 0
        assert set(r["stage_s"]) == {"semantic", "coarse", "fine", "decode"} and min(r["stage_s"].values()) > 0
        # workload W, exactly, for every sample of every implementation
        assert r["tokens"] == {"semantic": 150, "coarse": 450, "fine_frames": 225, "audio_samples": 72_000}
        assert r["audio_s"] == 3.0 * r["batch"] and r["semantic_tok_s"] > 0 and r["peak_mem_mib"] > 0
    assert {(s["reference"], s["batch"]) for s in result["speedups"]} == {("transformers", 1), ("suno", 1)}
