"""Smoke tests of scripts/benchmark.py (nanobark alone) and scripts/compare.py (against the references):
tiny GPTs, both workloads, one timed call per row, each row in its own process."""

import json
import os
import sys

import pytest
import torch

from helpers import ROOT, run

SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)
import bench  # noqa: E402  (the scripts' shared module)

# one thread: on a busy 2-core CI machine two threads per process can make the run 10x slower
TINY = ["--tiny", "--reps", "1", "--warmup", "0", "--device", "cpu", "--threads", "1"]
WORKLOAD = dict(semantic=150, coarse=450, fine_frames=225, audio_samples=72_000)  # every sample, W and V
STAGES = {"semantic", "coarse", "fine", "decode"}


def run_script(tmp_path, script, *args):
    out = tmp_path / "out.json"
    p = run(os.path.join(SCRIPTS, script), *TINY, *args, "--json", out, cwd=tmp_path)  # works from anywhere
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads(out.read_text())
    assert result["device"]["threads"] == 1 and result["device"]["torch"]
    voices = {w: d["voice"] for w, d in result["workloads"].items()}
    assert voices == {"W": None, "V": "v2/en_speaker_6"}
    for r in result["rows"]:
        assert r["config"] == "fp32" and r["latency_s"] > 0 and r["peak_mem_mib"] > 0
        assert set(r["stage_s"]) == STAGES and min(r["stage_s"].values()) > 0
        assert r["tokens"] == WORKLOAD  # the workload, exactly, for every sample of every implementation
        assert r["audio_s"] == 3.0 * r["batch"] and r["rtf"] == pytest.approx(r["latency_s"] / r["audio_s"])
    return p.stdout, result


@pytest.mark.slow  # each row in its own process
def test_benchmark_smoke(tmp_path):
    stdout, result = run_script(tmp_path, "benchmark.py", "--batch-sizes", "1,2")
    assert "| V | fp32 | 2 |" in stdout  # the markdown table
    rows = {(r["workload"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {("W", 1), ("W", 2), ("V", 1), ("V", 2)}
    # weights a decode step reads, tiny shapes (2 blocks, 32 wide, no biases) in fp32: the blocks and ln_f,
    # then all 10048 head rows (semantic) or the 1024 of one codebook (coarse); not the embedding tables
    blocks = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32 + 2 * 32) + 32
    for r in rows.values():
        assert r["impl"] == "nanobark" and r["step_bytes"] == {
            "semantic": 4 * (blocks + 10_048 * 32),
            "coarse": 4 * (blocks + 1024 * 32),
        }
        for stage, steps in (("semantic", 150), ("coarse", 450)):
            gb_s = r["step_bytes"][stage] * steps / r["stage_s"][stage] / 1e9
            assert r[f"{stage}_gb_s"] > 0 and r[f"{stage}_gb_s"] == pytest.approx(gb_s)
        assert r["semantic_tok_s"] == pytest.approx(r["batch"] * 150 / r["stage_s"]["semantic"])
        assert r["coarse_tok_s"] > 0 and r["fine_frames_s"] > 0 and r["decode_frames_s"] > 0


@pytest.mark.slow
def test_compare_smoke(tmp_path):
    stdout, result = run_script(tmp_path, "compare.py", "--impls", "nanobark,transformers,suno")
    assert "| V | suno | fp32 | 1 |" in stdout
    rows = {(r["impl"], r["workload"]): r for r in result["rows"]}
    assert set(rows) == {(i, w) for i in ("nanobark", "transformers", "suno") for w in "WV"}
    assert all(r["batch"] == 1 for r in rows.values())
    ups = {(s["workload"], s["reference"]): s for s in result["speedups"]}
    assert set(ups) == {(w, ref) for w in "WV" for ref in ("transformers", "suno")}
    for (w, ref), s in ups.items():
        assert s["speedup"] == pytest.approx(rows[(ref, w)]["latency_s"] / rows[("nanobark", w)]["latency_s"])


def test_configs_and_their_skip_reasons():
    """A config's labels become Bark.from_pretrained's arguments; nanobark.device's int8 rule decides the skips."""
    fp16 = dict(dtype=torch.float16, offload=True, int8=False, compile=False)
    assert bench.parse_config("offload+fp16") == fp16 and bench.parse_config("int8")["dtype"] == torch.float32
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert bench.skip_reason("int8", cpu) is None and bench.skip_reason("fp16+compile", cuda) is None
    for config, device in [("bf16+int8", cpu), ("int8", cuda), ("offload+int8", cuda)]:
        assert "int8 is for CPU decoding in float32" in bench.skip_reason(config, device)
    assert "offload" in bench.skip_reason("offload", cpu)
    assert "int8 does not combine with compile" in bench.skip_reason("int8+compile", cpu)


def test_an_int8_step_reads_one_byte_a_weight():
    """step_bytes counts an Int8Linear's int8 weights, not its bfloat16 copy for wide inputs."""
    from nanobark.config import GPTConfig
    from nanobark.cpu_speed import quantize_int8_
    from nanobark.gpt import GPT

    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, input_vocab_size=300, output_vocab_size=300)
    fp32, int8 = GPT(config), quantize_int8_(GPT(config), wide=True)
    blocks = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)  # the Linear weights; the LayerNorms stay float32
    norms = (2 * 2 + 1) * 32
    assert bench.step_bytes(fp32, 100) == 4 * (blocks + norms + 100 * 32)
    assert bench.step_bytes(int8, 100) == blocks + 4 * norms + 100 * 32
