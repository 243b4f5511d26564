"""`nanobark synthesize`: every text of a manifest into its own audio file, in batches, resumably; under
torchrun the items are shared out among the processes (the work itself: corpus.py)."""

import os

from ..files import check_utf8_name
from ..longform import check_silence
from ..settings import check_seed
from ..voices import find_voice, load_voice
from .manifest import ManifestError, read_manifest
from .parser import EXIT_CODES, Parser, at_least_1, checked, generation_options, given_settings
from .speak import FORMATS, DamagedModel, check_model, check_runtime, preset_names, write_audio

SYNTHESIZE_EPILOG = f"""the manifest:
  corpus.jsonl  one JSON object per line: {{"id": "utt1", "text": "Hello.", "voice": "v2/en_speaker_6"}}; optional
                voice, seed, long, silence, text_temp, waveform_temp, fine_temp, top_k, top_p, min_eos_p, max_duration
  corpus.csv    a header row naming the same columns (.tsv: tab-separated)
  corpus.txt    (any other name) one text per line; ids from the line numbers: line-0001, line-0002, ...
  A voice file's relative path is read from the manifest's folder. A wrong row is reported with its line,
  listed in DIR/errors.jsonl, and does not stop the others.

out:
  DIR/<id>.wav, and DIR/manifest.jsonl: a line per item made (id, file, text, voice, seed, model,
  settings, duration, seconds). Run the same command again after a crash: what is done is skipped.

examples:
  nanobark synthesize corpus.jsonl --out-dir out --batch-size 8 --seed 1
  torchrun --nproc_per_node=8 -m nanobark synthesize corpus.jsonl --out-dir out    (a rank per GPU)
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id job1 --rdzv_backend c10d --rdzv_endpoint host0:29500 \\
      -m nanobark synthesize corpus.jsonl --out-dir /shared/out     (the same on both machines; shared folders)

An item's seed is the row's, or --seed plus a hash of its id: its audio does not depend on how many
processes ran or on the batching (byte for byte on the CPU at the same OMP_NUM_THREADS).

Some rows may fail and the command still exits 0 (see DIR/errors.jsonl): it exits 1 when rows failed and
nothing was made, and 2 also for a manifest that cannot be read at all. What was finished is kept on a stop.

{EXIT_CODES}"""


def manifest_voices(model, folder):
    """A manifest row's voice -> what load_voice gets: a preset of the model, or a .npz voice file (a relative
    path is read from the manifest's folder), read and checked now; else one VoiceError naming it."""

    def check(voice):
        kind, ref = find_voice(voice, lambda: preset_names(model), folder)
        if kind == "recording":
            raise ValueError(
                f"voice {voice!r} is a recording; make it a voice once (nanobark clone {voice} "
                "--out VOICE.npz) and name the .npz"
            )
        if kind == "file":
            load_voice(ref)
        return ref

    return check


def synthesize_parser():
    # fmt: off
    p = Parser(prog="nanobark synthesize", epilog=SYNTHESIZE_EPILOG,
               parents=generation_options("sampling, for the rows without their own", "for long items",
                                          "; under torchrun, cuda is each process's GPU: cuda:LOCAL_RANK"),
               description="Speak every text of a manifest into its own audio file, in batches, resumably; under "
                           "torchrun, the items are shared out among the processes (one GPU each).")
    p.add_argument("manifest", help="a .jsonl, .csv or .tsv file of id, text and optional columns, or a text "
                   "file with one text per line")
    p.add_argument("--out-dir", required=True, help="the folder for the audio files and manifest.jsonl "
                   "(created if missing; on a shared file system for several machines)")
    p.add_argument("--batch-size", type=checked(int, at_least_1, "--batch-size"), default=8,
                   help="texts generated together, of about the same length")
    p.add_argument("--seed", type=checked(int, check_seed, "--seed"), default=0,
                   help="base seed: a row without a seed gets this plus a hash of its id")
    p.add_argument("--voice", help="the voice of the rows without their own: a preset or a .npz voice file "
                   "(default: none, a random speaker per row)")
    p.add_argument("--long", action="store_true", help="speak every row in long form (segments); rows over 256 "
                   "tokens always are")
    p.add_argument("--silence", type=checked(float, check_silence, "--silence"),
                   help="seconds of silence between the segments of long items without their own (default: 0.25)")
    p.add_argument("--format", choices=[ext[1:] for ext in FORMATS], default="wav",
                   help="wav and flac: 16-bit PCM; ogg: Vorbis, whose files differ from run to run in a random "
                   "stream number; mp3 where libsndfile writes it")
    p.add_argument("--overwrite", action="store_true", help="make every item again, even those already done, and "
                   "replace files of the items' names in --out-dir that no manifest line records")
    # fmt: on
    return p


def check_out_dir(p, args):
    out_dir = args.out_dir
    try:
        check_utf8_name(out_dir, "--out-dir")
    except ValueError as e:
        p.error(str(e))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        p.error(f"--out-dir {out_dir} is a file, not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        p.error(f"cannot make --out-dir {out_dir}: {e.strerror or e}")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        p.error(f"cannot write in --out-dir {out_dir}")
    written = os.path.join(out_dir, "manifest.jsonl")
    if os.path.exists(args.manifest) and os.path.exists(written) and os.path.samefile(args.manifest, written):
        p.error(f"{args.manifest} is the manifest this command writes; give the manifest of texts to speak")


def rank_device(p, device, ranks):
    """cuda without an index, under torchrun: this process's own GPU, cuda:LOCAL_RANK."""
    import torch

    if device.type == "cuda" and device.index is None and ranks.world > 1:  # one GPU per process
        if ranks.local >= torch.cuda.device_count():
            p.error(
                f"process {ranks.local} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                "GPUs): start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", ranks.local)
    return device


def check_foreign(p, out_dir, names):
    """Refuse to write over files in out_dir (`names`, relative to it) that no manifest line of the job records."""
    from .corpus import unrecorded

    try:
        foreign = unrecorded(out_dir, names)
    except OSError as e:  # a manifest.jsonl in --out-dir that is a device, a FIFO, or far too large
        p.error(str(e))
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        p.error(
            f"{os.path.join(out_dir, foreign[0])}{more} is in --out-dir but no manifest line of this job "
            "records it, so this job did not make it; move it away, or pass --overwrite to replace it"
        )


def check_synthesize(p, args, ranks):
    """-> (device, rows, problems); every usage error exits 2 here, before a model is loaded."""
    device = check_runtime(p, args)
    try:
        check_model(args.model)
    except ValueError as e:
        p.error(str(e))
    device = rank_device(p, device, ranks)
    check_out_dir(p, args)
    folder = os.path.dirname(os.path.abspath(args.manifest))
    try:
        rows, problems = read_manifest(args.manifest, manifest_voices(args.model, folder))
    except ManifestError as e:
        p.error(str(e))
    default = None
    if args.voice is not None:
        try:  # the flag's relative path is read from here; a row's from the manifest's folder
            default = manifest_voices(args.model, os.getcwd())(args.voice)
        except DamagedModel:
            raise  # the model's file, not the argument: exit 1
        except (ValueError, FileNotFoundError) as e:  # VoiceFileNotFoundError is the latter
            p.error(f"--voice: {e}")
    # the flags fill in what a row leaves out: a voice, long form, the silence between segments
    rows = [
        r._replace(
            voice=r.voice or args.voice,
            voice_ref=r.voice_ref or default,
            long=r.long or args.long,
            silence=args.silence if r.silence is None else r.silence,
        )
        for r in rows
    ]
    return device, rows, problems


def synthesize(argv):
    p = synthesize_parser()
    args = p.parse_args(argv)
    import torch

    from ..bark import Bark
    from ..weights.hub import resolve
    from .corpus import Job, Ranks, Synthesis, execute, local_rank_first

    ranks = Ranks()
    device, rows, problems = check_synthesize(p, args, ranks)
    if not args.overwrite:
        check_foreign(p, args.out_dir, [f"{r.id}.{args.format}" for r in rows])
    model = args.model + (" int8" if args.int8 else "") + (f" {args.dtype}" if args.dtype != "float32" else "")
    job = Job(
        out_dir=args.out_dir,
        manifest=args.manifest,
        model=model,
        ext=args.format,
        seed=args.seed,
        batch_size=args.batch_size,
        defaults=given_settings(args),
        overwrite=args.overwrite,
        progress=not args.quiet,
        save=lambda path, audio: write_audio(path, audio, Bark.sample_rate),
    )

    def load():  # a first run downloads and converts the model once per machine, then every rank loads it
        if device.type == "cuda":
            torch.cuda.set_device(device)
        local_rank_first(ranks, lambda: resolve(args.model))
        return Synthesis(Bark.from_pretrained(args.model, device=device, dtype=args.dtype, int8=args.int8))

    return execute(job, rows, problems, ranks, load)
