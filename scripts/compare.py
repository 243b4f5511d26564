"""Compare nanobark with transformers' BarkModel and Suno's original, on the very same random weights.

    python scripts/compare.py                                        # bark-small shapes, CPU, fp32, batch 1, W and V
    python scripts/compare.py --configs fp32,int8 --workloads W      # int8 rows compare with the references' fp32
    python scripts/compare.py --device cuda --batch-sizes 1,8,16 --json gpu.json
    python scripts/compare.py --model-size large --impls nanobark,transformers
    python scripts/compare.py --agreement                            # fp16/bf16/int8 vs fp32 top-1 agreement
    python scripts/compare.py --tiny --reps 1 --warmup 0             # smoke test: 2 layers, 32 hidden

scripts/benchmark.py measures nanobark alone (tokens/s, GB/s); this script shares its random checkpoint,
workloads W and V, timing and per-row subprocesses. A randomized transformers BarkModel is saved as it is
and converted for nanobark; Suno's GPTs load the converted tensors, and one randomized encodec-package codec
is shared by all three. Every implementation makes exactly the workload's tokens (see benchmark.py):
transformers' top-k 50 default is switched off and its EOS suppressed, Suno's and nanobark's early stop is
off. Suno's original has no batching: a batch of B runs its B samples one after the other.
"""

import contextlib
import functools
import importlib.util
import itertools
import json
import os
import sys
from importlib.metadata import version

import bench  # first: it puts the checkout on sys.path
import numpy as np
import torch
from bench import MAX_DURATION_S, N_COARSE, N_SEMANTIC, TEMPS, TEXT, Clock, check_counts, parse_config

from nanobark import Bark
from nanobark import generation as gen
from nanobark import layout as lay
from nanobark.weights.checkpoint import load_stage
from weights_convert.references import import_references, suno_copy, suno_voice

REFERENCES = ("transformers", "transformers-sdpa", "suno")
# configs the references do not have: their rows compare with the reference's run of the rest of the config
NANOBARK_ONLY = {"int8", "compile"}
ATTENTION = {"transformers": "eager", "transformers-sdpa": "sdpa"}


# ------------------------------------------------------------------ the two references


def suno_runner(weights, device, config, voice):
    import bark.generation as bg
    from encodec import EncodecModel
    from safetensors.torch import load_file
    from transformers import BertTokenizer

    nb, offload = os.path.join(weights, "nanobark"), parse_config(config)["offload"]
    home = "cpu" if offload else device
    voice = voice and suno_voice(voice)

    def gpt(stage):  # Suno's GPT on the converted tensors
        return suno_copy(load_stage(nb, stage), fine=stage == "fine").to(home)

    codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.load_state_dict(load_file(os.path.join(weights, "encodec.safetensors")))
    codec.set_target_bandwidth(6.0)  # as Suno's loader does
    tokenizer = BertTokenizer(os.path.join(nb, "vocab.txt"), do_lower_case=False)
    bg.models.update(text=dict(model=gpt("semantic"), tokenizer=tokenizer), coarse=gpt("coarse"))
    bg.models.update(fine=gpt("fine"), codec=codec.to(home).eval())
    bg.OFFLOAD_CPU = offload  # Suno's own offload: each model moves to models_devices[...] while it runs
    bg.models_devices.update({k: str(device) for k in ("text", "coarse", "fine", "codec")})
    quiet = dict(silent=True, use_kv_caching=True)
    no_eos = dict(quiet, allow_early_stop=False, max_gen_duration_s=MAX_DURATION_S)

    def run(batch):  # no batching in the original: `batch` samples, one after the other, stage by stage
        clock = Clock(device)
        with clock("semantic"):
            sem = [bg.generate_text_semantic(TEXT, voice, temp=TEMPS["semantic"], **no_eos) for _ in range(batch)]
        with clock("coarse"):
            coarse = [bg.generate_coarse(s, voice, temp=TEMPS["coarse"], **quiet) for s in sem]
        with clock("fine"):
            fine = [bg.generate_fine(c, voice, temp=TEMPS["fine"]) for c in coarse]
        with clock("decode"):
            audio = [bg.codec_decode(f) for f in fine]
        return clock.seconds, check_counts("suno", *bench.per_sample_counts(sem, coarse, fine, audio))

    return run, {}


def transformers_runner(weights, device, config, voice, attn="eager"):
    from transformers import BarkModel, BertTokenizer, GenerationConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    path, c = os.path.join(weights, "transformers"), parse_config(config)
    model = BarkModel.from_pretrained(path, dtype=c["dtype"], attn_implementation=attn).eval()
    if c["offload"]:  # accelerate hooks move each sub-model in turn
        model.enable_cpu_offload(accelerator_id=device.index or 0)
    else:
        model.to(device)
    # a fresh BarkModel has no nested generation config; these are Suno's sampling settings
    model.generation_config = GenerationConfig.from_dict(
        BarkGenerationConfig(
            semantic_config=dict(do_sample=True, temperature=TEMPS["semantic"]),
            coarse_acoustics_config=dict(do_sample=True, temperature=TEMPS["coarse"]),
            fine_acoustics_config=dict(temperature=TEMPS["fine"]),
        ).to_dict()
    )
    tok = BertTokenizer(os.path.join(path, "vocab.txt"), do_lower_case=False)
    history = voice and {k: torch.as_tensor(v, device=device) for k, v in suno_voice(voice).items()}

    # what BarkProcessor gives: input_ids and attention_mask, padded to 256 tokens
    processor = dict(padding="max_length", max_length=256, truncation=True, add_special_tokens=False)
    # top_k=0 turns off transformers' default top-k 50 (the original has none); suppressing token
    # 10000 (EOS) makes the end of speech impossible, so exactly 150 semantic tokens come out
    sampling = dict(do_sample=True, top_k=0, semantic_max_new_tokens=N_SEMANTIC)
    sampling.update({f"{stage}_temperature": t for stage, t in TEMPS.items()})

    # time the sub-generates that BarkModel.generate calls, by wrapping them on the instance
    state = {}

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            with state["clock"](stage):
                state[stage] = fn(*args, **kwargs)
            return state[stage]

        return wrapper

    model.semantic.generate = timed("semantic", model.semantic.generate)
    model.coarse_acoustics.generate = timed("coarse", model.coarse_acoustics.generate)
    model.fine_acoustics.generate = timed("fine", model.fine_acoustics.generate)
    model.codec_decode = timed("decode", model.codec_decode)

    def run(batch):
        enc = tok([TEXT] * batch, **processor, return_token_type_ids=False, return_tensors="pt").to(device)
        state["clock"] = Clock(device)
        model.generate(**enc, history_prompt=history, semantic_suppress_tokens=[10_000], **sampling)
        sem, coarse, fine, audio = (state[s] for s in ("semantic", "coarse", "fine", "decode"))
        n_sem = (sem < 10_000).sum(1).tolist()
        lengths = [[n] * batch for n in (coarse.shape[1], fine.shape[2], audio.shape[1])]
        return state["clock"].seconds, check_counts("transformers", n_sem, *lengths)

    return run, {}


RUNNERS = {
    "nanobark": bench.nanobark_runner,
    "suno": suno_runner,
    **{impl: functools.partial(transformers_runner, attn=a) for impl, a in ATTENTION.items()},
}
# libraries count in the baseline, not in the implementation's memory (every row imports nanobark)
BERT = "transformers.models.bert.tokenization_bert"
TRANSFORMERS = ["transformers.models.bark.modeling_bark", BERT]
PREIMPORTS = {"nanobark": [], "suno": ["bark.generation", BERT], "transformers": TRANSFORMERS}
PREIMPORTS["transformers-sdpa"] = TRANSFORMERS


def reference_config(config):
    """The config a reference runs for a nanobark config: int8 and compile are nanobark's own."""
    return "+".join(p for p in config.split("+") if p not in NANOBARK_ONLY) or "fp32"


def skip_reason(impl, config, device):
    reason, c = bench.skip_reason(config, device), parse_config(config)
    if reason or impl == "nanobark":
        return reason
    if impl == "suno" and c["dtype"] != torch.float32:
        return "the original has no half-precision mode (on CUDA with bf16 it always autocasts to bf16)"
    if impl.startswith("transformers") and c["offload"] and importlib.util.find_spec("accelerate") is None:
        return "BarkModel.enable_cpu_offload needs the accelerate package, which is not installed"
    if ATTENTION.get(impl) == "sdpa":
        from transformers.models.bark.modeling_bark import BarkPreTrainedModel

        if not getattr(BarkPreTrainedModel, "_supports_sdpa", False):
            return f"BarkModel has no sdpa attention in transformers {version('transformers')}"
    return None


def speedups(rows):
    """Reference latency / nanobark latency, for each workload and batch size both ran (int8 and compile
    rows against the reference's run of the rest of their config)."""
    ok = {(r["impl"], r["workload"], r["config"], r["batch"]): r for r in rows if "latency_s" in r}
    out = []
    for (impl, workload, config, batch), r in ok.items():
        row = dict(workload=workload, config=config, batch=batch)
        for ref in REFERENCES if impl == "nanobark" else ():
            ref_config = reference_config(config)
            if (ref, workload, ref_config, batch) in ok:
                up = ok[ref, workload, ref_config, batch]["latency_s"] / r["latency_s"]
                out.append(dict(row, reference=ref, reference_config=ref_config, speedup=up))
    return out


# ------------------------------------------------------------------ agreement: half precision and int8 vs fp32


@torch.no_grad()
def fine_inputs(bark, coarse, voice):
    """The window the fine model reads for each codebook k, filled greedily by `bark` (fp32); and where the
    new frames start in it (after the voice's fine history).

    Generation writes its guesses into every frame from there on, padding included, and the non-causal model
    sees them when predicting the next codebook, so the whole window is kept, not just the T real frames.
    """
    buf, n_hist = gen.fine_input(coarse, voice)
    assert len(buf) == lay.FINE_WINDOW, "the workload's 225 frames and the voice's history fit one window"
    buf = torch.as_tensor(buf, device=bark.device)[None]  # (1, 1024, 8)
    inputs = {}
    for k in range(lay.N_COARSE, lay.N_FINE):
        inputs[k] = buf.clone()
        buf[0, n_hist:, k] = bark.models["fine"](k, buf)[0, n_hist:, : lay.CODEBOOK_SIZE].argmax(-1)
    return inputs, n_hist


@torch.no_grad()
def teacher_forced_top1(bark, sem, coarse, voice, fine_in):
    """{stage: argmax at every position}, every model reading the same given tokens."""
    dev, out = bark.device, {}
    m = bark.models["semantic"]
    text = torch.as_tensor(bark.encode_text(TEXT), device=dev)[None]
    hist = torch.as_tensor(gen.semantic_history(voice), device=dev)[None]
    # the infer token predicts sem[0]; the logits that count follow the merged text block
    tail = torch.as_tensor(np.r_[lay.SEMANTIC_INFER, sem[:-1]], device=dev)[None]
    logits = m(embeds=m.merged_embedding(text, hist, tail))[0, lay.TEXT_LENGTH :]
    out["semantic"] = logits[:, : lay.SEMANTIC_VOCAB_SIZE].argmax(-1)
    m, preds = bark.models["coarse"], []
    sem_hist, coarse_hist = gen.coarse_history(voice)
    sem_t = torch.as_tensor(np.hstack([sem_hist, sem]), device=dev)
    flat = torch.as_tensor(np.hstack([coarse_hist, gen.flatten_codebooks(coarse)]), device=dev)
    n_hist = len(coarse_hist)
    # each window from its own context, as when generating
    for start in range(0, N_COARSE, lay.COARSE_WINDOW):
        ctx = gen.coarse_context(sem_t, flat[: n_hist + start], start, len(sem_hist))
        steps = flat[n_hist + start : n_hist + start + lay.COARSE_WINDOW]
        logits = m(torch.cat([ctx, steps[:-1]])[None])[0, len(ctx) - 1 :]
        for i in range(len(steps)):
            off = lay.SEMANTIC_VOCAB_SIZE + (start + i) % 2 * lay.CODEBOOK_SIZE
            preds.append(logits[i, off : off + lay.CODEBOOK_SIZE].argmax())
    out["coarse"] = torch.stack(preds)
    (inputs, n_hist), T = fine_in, coarse.shape[1]
    for k, buf in inputs.items():
        logits = bark.models["fine"](k, buf)[0, n_hist : n_hist + T, : lay.CODEBOOK_SIZE]
        out[f"fine cb{k}"] = logits.argmax(-1)
    return out


def agreement(path, device, workload):
    """Semantic and coarse read the workload's tokens (sampled by fp32); fine reads fp32's greedy windows."""
    base = Bark.from_pretrained(path, device=device)
    voice = base.load_voice(bench.WORKLOADS[workload])
    torch.manual_seed(0)
    sem = base.text_to_semantic(TEXT, voice, temp=TEMPS["semantic"], **bench.NO_EOS)
    coarse = base.semantic_to_coarse(sem, voice, temp=TEMPS["coarse"])
    assert (len(sem), coarse.size) == (N_SEMANTIC, N_COARSE), (len(sem), coarse.shape)
    fine_in = fine_inputs(base, coarse, voice)
    ref = teacher_forced_top1(base, sem, coarse, voice, fine_in)
    del base
    table = {stage: {"positions": len(r)} for stage, r in ref.items()}
    variants = dict(float16=dict(dtype=torch.float16), bfloat16=dict(dtype=torch.bfloat16))
    if device.type == "cpu":
        variants["int8"] = dict(int8=True)
    for name, kwargs in variants.items():
        variant = Bark.from_pretrained(path, device=device, **kwargs)
        out = teacher_forced_top1(variant, sem, coarse, voice, fine_in)
        for stage, r in ref.items():
            table[stage][name] = (out[stage] == r).float().mean().item()
    return table


# ------------------------------------------------------------------ report


def agreement_markdown(workload, table):
    variants = [k for k in next(iter(table.values())) if k != "positions"]
    columns = [("stage", "{stage}"), ("positions", "{positions}")] + [(v, f"{{{v}:.1%}}") for v in variants]
    return (
        f"teacher-forced top-1 agreement with float32 (nanobark), workload {workload}:\n\n"
        + bench.markdown([dict(r, stage=stage) for stage, r in table.items()], columns)
        + "\n\n"
    )


COLUMNS = [
    ("workload", "{workload}"),
    ("impl", "{impl}"),
    ("config", "{config}"),
    ("batch", "{batch}"),
    ("latency s", "{latency_s:.3f}"),
    ("RTF", "{rtf:.3f}"),
    ("semantic s", "{stage_s[semantic]:.2f}"),
    ("coarse s", "{stage_s[coarse]:.2f}"),
    ("fine s", "{stage_s[fine]:.2f}"),
    ("decode s", "{stage_s[decode]:.2f}"),
    ("peak MiB", "{peak_mem_mib:.0f}"),
]
SPEEDUP_COLUMNS = [
    ("workload", "{workload}"),
    ("nanobark", "{config}"),
    ("batch", "{batch}"),
    ("reference", "{reference} {reference_config}"),
    ("speed-up", "{speedup:.2f}x"),
]

EPILOG = """table columns (one row per workload, implementation, config and batch size B):
  latency s       median wall time of one call of the four stages for the whole batch (Suno: the B samples
                  one after the other)
  RTF             latency / audio seconds made (B x 3.0): below 1 is faster than real time
  semantic s ...  each stage's median seconds
  peak MiB        as in scripts/benchmark.py: CUDA max_memory_allocated, or the row's own peak RSS above its
                  RSS after imports
speed-ups: reference latency / nanobark latency, for each workload and batch size both ran; nanobark's int8
and compile configs compare with the reference's run of the rest of the config (int8 -> fp32).
implementations: nanobark, transformers (eager attention), transformers-sdpa, suno.
configs: fp32, fp16 or bf16, joined by + with offload (CUDA); for nanobark also int8 (CPU) and compile."""


def parse_args(argv):
    p = bench.parser(__doc__, EPILOG)
    # fmt: off
    p.add_argument("--impls", type=bench.csv(str), default=["nanobark", *REFERENCES],
                   help="comma list of nanobark,transformers,transformers-sdpa,suno (default all)")
    p.add_argument("--ref-batch-sizes", type=bench.csv(int),
                   help="batch sizes for the references (default: --batch-sizes); Suno runs them sequentially")
    p.add_argument("--agreement", action="store_true", help="instead of timing: teacher-forced top-1 agreement of "
                   "nanobark in float16, bfloat16 and int8 (CPU) with float32, per stage, on each workload's tokens")
    p.add_argument("--checkpoint",
                   help="with --agreement: a nanobark-converted folder (real weights) to use instead of random ones")
    # fmt: on
    args = p.parse_args(argv)
    if args.worker:
        return args
    bench.check_args(p, args)
    if [i for i in args.impls if i not in RUNNERS]:
        p.error(f"unknown implementation in {','.join(args.impls)}; known: {', '.join(RUNNERS)}")
    if args.checkpoint and not args.agreement:  # the timing runs need the same weights in all three layouts
        p.error("--checkpoint is for --agreement only; add --agreement or drop --checkpoint")
    args.ref_batch_sizes = args.ref_batch_sizes or args.batch_sizes
    if min(args.ref_batch_sizes) < 1:
        p.error("batch sizes must be >= 1")
    return args


def timing_rows(args, weights):
    rows = []
    for workload, config, impl in itertools.product(args.workloads, args.configs, args.impls):
        if impl != "nanobark" and NANOBARK_ONLY & set(config.split("+")):
            continue
        for batch in args.batch_sizes if impl == "nanobark" else args.ref_batch_sizes:
            row = dict(impl=impl, workload=workload, config=config, batch=batch)
            row["sequential"] = impl == "suno" and batch > 1  # the original has no batching
            rows.append(bench.run_row(__file__, args, row, weights, skip_reason(impl, config, args.device)))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        if spec["impl"] != "nanobark":
            import_references()
        return bench.worker(spec, RUNNERS[spec["impl"]], PREIMPORTS[spec["impl"]])
    info, workloads = bench.announce(args, args.workloads)
    weights = contextlib.nullcontext() if args.checkpoint else bench.random_weights(args, not args.agreement)
    with weights as tmp:
        if args.agreement:
            path = args.checkpoint or os.path.join(tmp, "nanobark")
            tables = {w: agreement(path, args.device, w) for w in args.workloads}
            text = "".join(agreement_markdown(w, t) for w, t in tables.items())
            return bench.finish(args, "compare", info, workloads, [], text, agreement=tables)
        rows = timing_rows(args, tmp)
    ups = speedups(rows)
    text = bench.markdown(rows, COLUMNS) + "\n\n"
    if any(r["sequential"] for r in rows):
        text += "Suno's rows with batch > 1 run their samples one after the other (the original has no batching).\n"
    if args.device.type == "cuda" and "suno" in args.impls:
        text += "Suno's original runs its fp32 weights under bf16 autocast with TF32 on a bf16-capable GPU.\n"
    text += "\nnanobark's speed-up (reference latency / nanobark latency):\n\n"
    text += bench.markdown(ups, SPEEDUP_COLUMNS) + "\n"
    return bench.finish(args, "compare", info, workloads, rows, text, speedups=ups)


if __name__ == "__main__":
    sys.exit(main())
