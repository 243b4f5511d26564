"""The fast paths (compiled step, int8, half precision, offload) against the eager float32 reference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanobark import Bark, cpu_speed
from nanobark.config import GPTConfig
from nanobark.gpt import GPT


def tiny_gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, input_vocab_size=300, output_vocab_size=300)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model


@torch.no_grad()
def run_steps(model, ctx, pad, steps):
    """Logits of a prefill of ctx (B, L), then one decode step per new id: (B, 1 + n, V). steps: n, each step
    fed the argmax before it, or (B, n) ids to feed (teacher forcing: two models then see the same inputs)."""
    model.setup_cache(ctx.shape[0])
    out = [model(ctx, pad=pad, last_only=True)]
    greedy = isinstance(steps, int)
    for i in range(steps if greedy else steps.shape[1]):
        token = out[-1][:, -1].argmax(-1, keepdim=True) if greedy else steps[:, i : i + 1]
        out.append(model.decode_step(token, ctx.shape[1] + i, pad))
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("real_compile", [False, True])
def test_fixed_shape_step_equals_eager(real_compile):
    """The compiled step attends over the whole fixed-size cache with a mask: same logits as the eager step."""
    model = tiny_gpt()
    ctx = torch.randint(0, 300, (2, 40))
    pad = torch.tensor([0, 7])  # the second context is 7 slots shorter
    eager = run_steps(model, ctx, pad, 12)
    if real_compile:
        model.compile_step()
    else:
        model._compiled_step = model.step_fixed  # the same fixed-shape code path, without the compiler
    fast = run_steps(model, ctx, pad, 12)
    assert (fast - eager).abs().max() <= 1e-5


def test_left_padding_equals_unpadded():
    model = tiny_gpt()
    ctx = torch.randint(0, 300, (1, 33))
    alone = run_steps(model, ctx, None, 5)
    padded = torch.cat([torch.zeros(1, 9, dtype=torch.long), ctx], dim=1)
    batch = run_steps(model, torch.cat([padded, torch.randint(0, 300, (1, 42))]), torch.tensor([9, 0]), 5)
    assert (batch[:1] - alone).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_runs_with_float32_sampling_and_codec(converted, dtype):
    bark = Bark.from_pretrained(converted, device="cpu", dtype=dtype)
    assert bark.models["semantic"].lm_head.weight.dtype == getattr(torch, dtype)
    assert bark.models["codec"].conv_in.weight.dtype == torch.float32
    full, audio = bark.generate("Hello dog", voice="announcer", seed=0, max_duration=0.3, output_full=True)
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) == 320 * full["fine_prompt"].shape[1]
    assert bark.models["semantic"].h[0].attn.cache.kv.dtype == getattr(torch, dtype)


def int8_bark(converted, monkeypatch, wide):
    """Bark with int8=True as a CPU with (wide=True) or without native bfloat16 would build it."""
    monkeypatch.setattr(cpu_speed, "native_bf16", lambda: wide)
    return Bark.from_pretrained(converted, device="cpu", int8=True)


@pytest.mark.parametrize("wide", [False, True])
@torch.no_grad()
def test_int8_logits_track_float32(converted, monkeypatch, wide):
    ref = Bark.from_pretrained(converted, device="cpu")
    q = int8_bark(converted, monkeypatch, wide)
    coarse, fine = q.models["coarse"], q.models["fine"]
    assert all(type(m) is not torch.nn.Linear for s in ("semantic", "coarse", "fine") for m in q.models[s].modules())
    c_attn = coarse.h[0].attn.c_attn
    assert isinstance(c_attn, cpu_speed.Int8Linear) and c_attn.packed is not None
    assert (c_attn.wide is not None) == wide and (fine.h[0].mlp.c_fc.wide is not None) == wide
    assert (fine.h[0].mlp.c_fc.packed is None) == wide  # the fine GPT has no one-token steps to keep int8 for
    idx = torch.randint(0, 12_096, (1, 200))
    a, b = ref.models["coarse"](idx), coarse(idx)  # a wide input: the bfloat16 copy when there is one
    assert ((a - b).abs().mean() / a.std()) < 0.05  # int8 noise, far below the spread of the logits
    # decode steps run on the int8 weights, over a bfloat16 cache where the CPU has bfloat16
    ctx, fed = torch.randint(0, 12_096, (1, 40)), torch.randint(0, 12_096, (1, 8))
    a, b = (run_steps(m, ctx, None, fed) for m in (ref.models["coarse"], coarse))
    assert ((a - b).abs().mean() / a.std()) < 0.05
    assert coarse.h[0].attn.cache.kv.dtype == (torch.bfloat16 if wide else torch.float32)
    audio = q.generate("Hello", seed=0, max_duration=0.2)
    assert np.isfinite(audio).all() and audio.dtype == np.float32
    with pytest.raises(ValueError, match="int8"):
        Bark.from_pretrained(converted, device="cpu", dtype="float16", int8=True)


@pytest.mark.parametrize("bias", [False, True])
@torch.no_grad()
def test_int8_linear_paths_and_head_rows(bias):
    """Narrow inputs take the int8 kernel (float32 out), from WIDE_ROWS rows on the bfloat16 copy (bfloat16 out);
    a slice of output rows equals those rows of the whole product on both paths."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96, bias=bias)
    q = cpu_speed.Int8Linear(linear, steps=True, wide=True)
    for n, dtype in (
        (1, torch.float32),
        (cpu_speed.WIDE_ROWS - 1, torch.float32),
        (cpu_speed.WIDE_ROWS, torch.bfloat16),
    ):
        x = torch.randn(1, n, 64)
        y, ref = q(x), linear(x)
        assert y.dtype == dtype and y.shape == ref.shape
        assert ((y.float() - ref).norm() / ref.norm()) < 2e-2
        rows = slice(17, 61)
        assert torch.equal(q(x, rows=rows), y[..., rows])
    narrowing = cpu_speed.Int8Linear(torch.nn.Linear(96, 64, bias=bias), steps=True, wide=True)
    x = torch.randn(2, cpu_speed.SLOW_ROWS // 2 + 3, 96)  # more rows than SLOW_ROWS, in a batch: run in chunks
    ref = F.linear(x.bfloat16(), narrowing.wide, narrowing.wide_bias)
    assert narrowing(x).shape == ref.shape and (narrowing(x).float() - ref.float()).abs().max() < 1e-2
    narrow_only = cpu_speed.Int8Linear(linear, steps=True, wide=False)
    x = torch.randn(1, 3 * cpu_speed.WIDE_ROWS, 64)
    assert narrow_only(x).dtype == torch.float32 and narrow_only.wide is None


def test_offload_moves_each_stage_only_while_it_runs(converted, monkeypatch):
    bark = Bark.from_pretrained(converted, device="cpu", offload=True)
    moves = []
    for name, model in bark.models.items():
        monkeypatch.setattr(model, "to", lambda *a, _n=name, _m=model, **k: (moves.append((_n, str(a[0]))), _m)[1])
    bark.generate("Hello", seed=0, max_duration=0.2)
    assert moves == [(s, d) for s in ("semantic", "coarse", "fine", "codec") for d in ("cpu", "cpu")]
    assert bark.models["semantic"].h[0].attn.cache is None  # the KV cache left with its stage


# Agreement floors of reduced precision with float32, teacher-forced (the same random context for both):
# top-1 agreement of the logits over 600 positions per causal stage and 2048 per fine codebook, and the
# relative error of the logits. Measured on the tiny random model: fp16 99.7% / 9e-4, bf16 97% / 7e-3,
# int8 90-97% / 2-4e-2. The tiny model's logits are nearly flat, so these floors are loose for real weights.
FLOORS = {"float16": (0.98, 3e-3), "bfloat16": (0.93, 2e-2), "int8": (0.85, 6e-2), "int8+bf16": (0.95, 1.5e-2)}


@pytest.mark.parametrize("kind", sorted(FLOORS))
@torch.no_grad()
def test_reduced_precision_agrees_with_float32(converted, monkeypatch, kind):
    ref = Bark.from_pretrained(converted, device="cpu")
    if kind.startswith("int8"):  # int8 alone, or with the bfloat16 copy for wide inputs (as on a CPU with AMX)
        low = int8_bark(converted, monkeypatch, wide=kind == "int8+bf16")
    else:
        low = Bark.from_pretrained(converted, device="cpu", dtype=kind)
    min_agreement, max_error = FLOORS[kind]
    g = torch.Generator().manual_seed(0)
    cases = [
        (s, (lambda m, i: m(i)), torch.randint(0, v, (2, 300), generator=g))
        for s, v in (("semantic", 10_048), ("coarse", 12_096))
    ]
    cases += [
        ("fine", (lambda m, i, k=k: m(k, i)), torch.randint(0, 1024, (2, 1024, 8), generator=g)) for k in (1, 4, 7)
    ]
    for stage, run, idx in cases:
        a, b = run(ref.models[stage], idx).float(), run(low.models[stage], idx).float()
        agreement = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
        error = ((a - b).norm() / a.norm()).item()
        assert agreement >= min_agreement and error <= max_error, (stage, agreement, error)
