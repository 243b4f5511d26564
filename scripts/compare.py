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
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import torch
from benchmark import (
    MAX_DURATION_S,
    N_COARSE,
    N_SEMANTIC,
    TEMPS,
    TEXT,
    WORKLOADS,
    Clock,
    announce,
    check_args,
    check_counts,
    converter,
    csv,
    finish,
    import_references,
    markdown,
    nanobark_runner,
    parse_config,
    parser,
    per_sample_counts,
    random_weights,
    run_row,
    skip_reason,
    suno_voice,
    worker,
)

REFERENCES = ("transformers", "transformers-sdpa", "suno")
NANOBARK_ONLY = {
    "int8",
    "compile",
}  # configs the references do not have; they compare with the rest of the config
ATTENTION = {"transformers": "eager", "transformers-sdpa": "sdpa"}


# ------------------------------------------------------------------ the two references


def suno_runner(weights, device, config, voice):
    import bark.generation as bg
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig
    from encodec import EncodecModel
    from safetensors.torch import load_file
    from transformers import BertTokenizer

    from nanobark.weights.checkpoint import load_config

    suno_name = converter().suno_name
    nb, offload = os.path.join(weights, "nanobark"), parse_config(config)["offload"]
    cfg, home = load_config(nb), "cpu" if offload else device
    voice = voice and suno_voice(voice)

    def suno_gpt(stage):
        c = getattr(cfg, stage)
        args = converter().suno_model_args(c)
        with torch.device("meta"):  # no random init: the weights are assigned below
            model = FineGPT(FineGPTConfig(**args)) if stage == "fine" else GPT(GPTConfig(**args))
        state = {suno_name(k): v for k, v in load_file(os.path.join(nb, f"{stage}.safetensors")).items()}
        if stage == "fine":  # Suno keeps the tied heads as their own entries; the same tensor keeps them tied
            state.update(
                {f"lm_heads.{i}.weight": state[f"transformer.wtes.{i + 1}.weight"] for i in range(7)}
            )
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(home).eval()

    codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.load_state_dict(load_file(os.path.join(weights, "encodec.safetensors")))
    codec.set_target_bandwidth(6.0)  # as Suno's loader does
    bg.models.update(
        text={
            "model": suno_gpt("semantic"),
            "tokenizer": BertTokenizer(os.path.join(nb, "vocab.txt"), do_lower_case=False),
        },
        coarse=suno_gpt("coarse"),
        fine=suno_gpt("fine"),
        codec=codec.to(home).eval(),
    )
    bg.OFFLOAD_CPU = offload  # Suno's own offload: each model moves to models_devices[...] while it runs
    bg.models_devices.update({k: str(device) for k in ("text", "coarse", "fine", "codec")})

    def run(batch):  # no batching in the original: `batch` samples, one after the other, stage by stage
        clock = Clock(device)
        with clock("semantic"):
            sem = [
                bg.generate_text_semantic(
                    TEXT,
                    voice,
                    temp=TEMPS["semantic"],
                    silent=True,
                    allow_early_stop=False,
                    max_gen_duration_s=MAX_DURATION_S,
                    use_kv_caching=True,
                )
                for _ in range(batch)
            ]
        with clock("coarse"):
            coarse = [
                bg.generate_coarse(s, voice, temp=TEMPS["coarse"], silent=True, use_kv_caching=True)
                for s in sem
            ]
        with clock("fine"):
            fine = [bg.generate_fine(c, voice, temp=TEMPS["fine"]) for c in coarse]
        with clock("decode"):
            audio = [bg.codec_decode(f) for f in fine]
        return clock.seconds, check_counts("suno", *per_sample_counts(sem, coarse, fine, audio))

    return run, {}


def transformers_runner(weights, device, config, voice, attn="eager"):
    from transformers import BarkModel, BertTokenizer, GenerationConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    path, c = os.path.join(weights, "transformers"), parse_config(config)
    model = BarkModel.from_pretrained(path, dtype=c["dtype"], attn_implementation=attn).eval()
    if c["offload"]:
        model.enable_cpu_offload(
            accelerator_id=device.index or 0
        )  # accelerate hooks move each sub-model in turn
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
        enc = tok(
            [TEXT] * batch,
            padding="max_length",
            max_length=256,
            truncation=True,
            add_special_tokens=False,
            return_tensors="pt",
        )  # what BarkProcessor gives
        state["clock"] = Clock(device)
        # top_k=0 turns off transformers' default top-k 50 (the original has none); suppressing token
        # 10000 (EOS) makes the end of speech impossible, so exactly 150 semantic tokens come out
        model.generate(
            input_ids=enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            history_prompt=history,
            do_sample=True,
            top_k=0,
            semantic_temperature=TEMPS["semantic"],
            coarse_temperature=TEMPS["coarse"],
            fine_temperature=TEMPS["fine"],
            semantic_max_new_tokens=N_SEMANTIC,
            semantic_suppress_tokens=[10_000],
        )
        sem, coarse, fine, audio = (state[s] for s in ("semantic", "coarse", "fine", "decode"))
        n_sem = (sem < 10_000).sum(1).tolist()
        return state["clock"].seconds, check_counts(
            "transformers",
            n_sem,
            [coarse.shape[1]] * batch,
            [fine.shape[2]] * batch,
            [audio.shape[1]] * batch,
        )

    return run, {}


RUNNERS = {
    "nanobark": nanobark_runner,
    "suno": suno_runner,
    **{impl: functools.partial(transformers_runner, attn=a) for impl, a in ATTENTION.items()},
}
PREIMPORTS = {
    "nanobark": ["nanobark.bark"],
    "transformers": [
        "nanobark.bark",
        "transformers.models.bark.modeling_bark",
        "transformers.models.bert.tokenization_bert",
    ],
    "suno": ["nanobark.bark", "bark.generation", "transformers.models.bert.tokenization_bert"],
}
PREIMPORTS["transformers-sdpa"] = PREIMPORTS["transformers"]


def reference_config(config):
    """The config a reference runs for a nanobark config: int8 and compile are nanobark's own."""
    return "+".join(p for p in config.split("+") if p not in NANOBARK_ONLY) or "fp32"


def compare_skip_reason(impl, config, device):
    reason = skip_reason(config, device)
    c = parse_config(config)
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
        for ref in REFERENCES if impl == "nanobark" else ():
            key = (ref, workload, reference_config(config), batch)
            if key in ok:
                out.append(
                    dict(
                        workload=workload,
                        config=config,
                        batch=batch,
                        reference=ref,
                        reference_config=key[2],
                        speedup=ok[key]["latency_s"] / r["latency_s"],
                    )
                )
    return out


# ------------------------------------------------------------------ agreement: half precision and int8 vs fp32


@torch.no_grad()
def fine_inputs(bark, coarse, voice):
    """The window the fine model reads for each codebook k, filled greedily by `bark` (fp32); and where the
    new frames start in it (after the voice's fine history).

    Generation writes its guesses into every frame from there on, padding included, and the non-causal model
    sees them when predicting the next codebook, so the whole window is kept, not just the T real frames.
    """
    from nanobark import generation as gen
    from nanobark import layout as lay

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
    from nanobark import generation as gen
    from nanobark import layout as lay

    dev, out = bark.device, {}
    m = bark.models["semantic"]
    text = torch.as_tensor(bark.encode_text(TEXT), device=dev)[None]
    hist = torch.as_tensor(gen.semantic_history(voice), device=dev)[None]
    tail = torch.as_tensor(np.r_[lay.SEMANTIC_INFER, sem[:-1]], device=dev)[
        None
    ]  # infer token predicts sem[0]
    logits = m(embeds=m.merged_embedding(text, hist, tail))[
        0, lay.TEXT_LENGTH :
    ]  # after the merged text block
    out["semantic"] = logits[:, : lay.SEMANTIC_VOCAB_SIZE].argmax(-1)
    m, preds = bark.models["coarse"], []
    sem_hist, coarse_hist = gen.coarse_history(voice)
    sem_t, flat = (
        torch.as_tensor(np.hstack(a), device=dev)
        for a in ([sem_hist, sem], [coarse_hist, gen.flatten_codebooks(coarse)])
    )
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
        out[f"fine cb{k}"] = bark.models["fine"](k, buf)[0, n_hist : n_hist + T, : lay.CODEBOOK_SIZE].argmax(
            -1
        )
    return out


def agreement(path, device, workload):
    """Semantic and coarse read the workload's tokens (sampled by fp32); fine reads fp32's greedy windows."""
    from nanobark import Bark

    base = Bark.from_pretrained(path, device=device)
    voice = base.load_voice(WORKLOADS[workload])
    torch.manual_seed(0)
    sem = base.text_to_semantic(
        TEXT, voice, temp=TEMPS["semantic"], allow_early_stop=False, max_duration=MAX_DURATION_S
    )
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
        out = teacher_forced_top1(
            Bark.from_pretrained(path, device=device, **kwargs), sem, coarse, voice, fine_in
        )
        for stage, r in ref.items():
            table[stage][name] = (out[stage] == r).float().mean().item()
    return table


# ------------------------------------------------------------------ report


def agreement_markdown(workload, table):
    variants = [k for k in next(iter(table.values())) if k != "positions"]
    columns = [("stage", "{stage}"), ("positions", "{positions}")] + [(v, f"{{{v}:.1%}}") for v in variants]
    return (
        f"teacher-forced top-1 agreement with float32 (nanobark), workload {workload}:\n\n"
        + markdown([dict(r, stage=stage) for stage, r in table.items()], columns)
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
    p = parser(__doc__, EPILOG)
    p.add_argument(
        "--impls",
        type=csv(str),
        default=["nanobark", *REFERENCES],
        help="comma list of nanobark,transformers,transformers-sdpa,suno (default all)",
    )
    p.add_argument(
        "--ref-batch-sizes",
        type=csv(int),
        help="batch sizes for the references (default: --batch-sizes); Suno runs them sequentially",
    )
    p.add_argument(
        "--agreement",
        action="store_true",
        help="instead of timing: teacher-forced top-1 agreement of "
        "nanobark in float16, bfloat16 and int8 (CPU) with float32, per stage, on each workload's tokens",
    )
    p.add_argument(
        "--checkpoint",
        help="with --agreement: a nanobark-converted folder (real weights) to use instead of random ones",
    )
    args = p.parse_args(argv)
    if args.worker:
        return args
    check_args(p, args)
    if [i for i in args.impls if i not in RUNNERS]:
        p.error(f"unknown implementation in {','.join(args.impls)}; known: {', '.join(RUNNERS)}")
    if args.checkpoint and not args.agreement:
        p.error(
            "--checkpoint is for --agreement only (the timing runs need the same weights in all three layouts)"
        )
    args.ref_batch_sizes = args.ref_batch_sizes or args.batch_sizes
    if min(args.ref_batch_sizes) < 1:
        p.error("batch sizes must be >= 1")
    return args


def timing_rows(args, weights):
    rows = []
    for workload in args.workloads:
        for config in args.configs:
            for impl in args.impls:
                if impl != "nanobark" and NANOBARK_ONLY & set(config.split("+")):
                    continue
                for batch in args.batch_sizes if impl == "nanobark" else args.ref_batch_sizes:
                    row = dict(
                        impl=impl,
                        workload=workload,
                        config=config,
                        batch=batch,
                        sequential=impl == "suno" and batch > 1,
                    )
                    reason = compare_skip_reason(impl, config, args.device)
                    rows.append(
                        dict(row, skipped=reason) if reason else run_row(__file__, args, row, weights)
                    )
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        if spec["impl"] != "nanobark":
            import_references()
        return worker(spec, RUNNERS[spec["impl"]], PREIMPORTS[spec["impl"]])
    info, workloads = announce(args, args.workloads)
    with contextlib.nullcontext() if args.checkpoint else random_weights(args, not args.agreement) as tmp:
        if args.agreement:
            tables = {
                w: agreement(args.checkpoint or os.path.join(tmp, "nanobark"), args.device, w)
                for w in args.workloads
            }
            text = "".join(agreement_markdown(w, t) for w, t in tables.items())
            return finish(args, "compare", info, workloads, [], text, agreement=tables)
        rows = timing_rows(args, tmp)
    ups = speedups(rows)
    text = markdown(rows, COLUMNS) + "\n\n"
    if any(r["sequential"] for r in rows):
        text += "Suno's rows with batch > 1 run their samples one after the other (the original has no batching).\n"
    if args.device.type == "cuda" and "suno" in args.impls:
        text += "Suno's original runs its fp32 weights under bf16 autocast with TF32 on a bf16-capable GPU.\n"
    text += (
        "\nnanobark's speed-up (reference latency / nanobark latency):\n\n"
        + markdown(ups, SPEEDUP_COLUMNS)
        + "\n"
    )
    return finish(args, "compare", info, workloads, rows, text, speedups=ups)


if __name__ == "__main__":
    sys.exit(main())
