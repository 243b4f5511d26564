"""The `nanobark` command: speak a text, list the voices, clone a voice, convert a checkpoint, synthesize a corpus.

    nanobark "Hello, my dog is cute" --out hello.wav
    nanobark voices --language fr
    nanobark clone me.wav --out me.npz
    nanobark convert SNAPSHOT_FOLDER OUT_FOLDER
    torchrun --nproc_per_node=8 -m nanobark synthesize corpus.jsonl --out-dir out

Every argument is checked before a model is loaded, with the library's own checks, and a bad one exits 2
with one line; a failure while working exits 1; a signal exits 128 + its number, leaving nothing
half-written. `nanobark.__main__` is the installed entry point (it catches a Ctrl-C while this loads).
"""

import argparse
import difflib
import os
import signal
import sys
import time
import warnings

import numpy as np
import torch

from .. import __version__
from ..audio import load_clip
from ..bark import Bark
from ..cloning import clone_voice
from ..device import check_device, check_int8
from ..files import write_atomic
from ..layout import TEXT_LENGTH
from ..longform import check_silence, generate_long, stream
from ..sampling import (
    check_max_duration,
    check_min_eos_p,
    check_seed,
    check_temperature,
    check_top_k,
    check_top_p,
)
from ..tokenizer import MAX_TEXT_CHARS, match_slow_cleanup, normalize_text
from ..voices import LANGUAGES, SUNO_PRESETS, PresetIndex, VoiceError, find_voice_file, load_voice, save_voice
from ..weights.convert.folder import main as convert_main
from ..weights.hub import (
    HUB_MODELS,
    HUBERT_REPO,
    QUANTIZER_DEFAULT,
    QUANTIZER_REPO,
    looks_like_hub_id,
    resolve,
)
from .corpus import Job, Ranks, local_rank_first
from .corpus import run as run_corpus
from .manifest import SETTINGS, ManifestError, read_manifest

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
# the first argument picks one; anything else is a text to speak
COMMANDS = ("voices", "clone", "convert", "synthesize")
AUDIO_FILES = (".wav", ".flac", ".ogg", ".mp3")  # --voice me.wav: a recording to clone

EXIT_CODES = """exit codes:
  0    done
  1    the work failed (a damaged model, a full disk, no network for a first download, ...)
  2    bad arguments, found before any model is loaded
  130  stopped by Ctrl-C; 143 by SIGTERM; 129 by SIGHUP (nothing half-written is left)
  141  the program reading standard output stopped reading (as for SIGPIPE)"""

SPEAK_EPILOG = f"""other commands:
  nanobark voices [--language LANG]     list the voice presets, by language
  nanobark clone RECORDING --out VOICE.npz   make a voice from 5-12 s of someone speaking
  nanobark convert SRC OUT              convert a checkpoint folder into nanobark's layout
  nanobark synthesize --help            many texts (a manifest) to audio files, resumable; torchrun: many GPUs
  (to speak the word "voices" itself: nanobark -- voices)

examples:
  nanobark "Hello, my dog is cute" --out hello.wav
  nanobark "Bonjour, je m'appelle Marie." --voice v2/fr_speaker_1 --seed 1 --out bonjour.flac
  nanobark --file story.txt --long --voice v2/en_speaker_6 --out story.wav
  nanobark --file story.txt --stream --out - | aplay -f S16_LE -r 24000
  nanobark "Hello" --int8 --out fast.wav       (CPU: int8 weights, ~2x faster, near-identical speech)
  nanobark "Hello, it is me." --voice me.wav --out me_speaking.wav     (clones me.wav on the fly)

The first run downloads suno/bark-small from the Hugging Face Hub (about 1.7 GB) and converts it once into
nanobark's cache; offline, pass a downloaded snapshot folder with --model FOLDER and set HF_HUB_OFFLINE=1.

{EXIT_CODES}"""


# ---------------------------------------------------------------- checks, as argparse types


def checked(convert, check, flag):
    """An argparse type: convert the text, then the library's own check, its message naming the flag."""

    def parse(text):
        value = convert(text)  # a ValueError here is argparse's "invalid float value"
        try:
            return check(value, name=flag)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = convert.__name__
    return parse


def one_line_errors(parser):
    """A usage error as one line (the usage summary of 25 options would bury it), naming --help; and the exit
    codes at the end of every command's --help."""
    parser.error = lambda message: parser.exit(
        2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n"
    )
    if "exit codes:" not in (parser.epilog or ""):
        parser.epilog = f"{parser.epilog}\n\n{EXIT_CODES}" if parser.epilog else EXIT_CODES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def check_model(name):
    """A local checkpoint folder or a Hub id, else one line saying what is wrong (nothing is loaded)."""
    if os.path.isdir(name):
        if not any(os.path.exists(os.path.join(name, f)) for f in ("config.json", "text.pt", "text_2.pt")):
            raise ValueError(
                f"--model {name}: the folder has no config.json (nor Suno's text.pt); pass a folder "
                "downloaded from suno/bark-small or suno/bark, or one that `nanobark convert` wrote"
            )
    elif not looks_like_hub_id(name):
        raise ValueError(
            f"--model {name}: no such folder, and not a Hub id; use {' or '.join(HUB_MODELS)}, or a folder"
        )
    return name


def preset_names(model):
    """The voice presets a model offers, read without loading it: Suno's for a Hub id, else the folder's."""
    if not os.path.isdir(model):
        return list(SUNO_PRESETS)
    if not os.path.exists(os.path.join(model, "speaker_embeddings_path.json")):
        return []
    return PresetIndex.from_dir(model).names()


def check_voice(voice, model):
    """A preset name the model has (a preset wins over a file of the same name, as in load_voice), a voice
    file that loads and validates, or a recording's loaded clip; else one line (VoiceError) naming the voice."""
    try:
        names, broken = preset_names(model), None
    except VoiceError as e:  # a damaged speaker_embeddings_path.json matters only if the voice is not a file
        names, broken = [], e
    if voice.replace("\\", "/") in names:
        return voice
    if voice.lower().endswith(AUDIO_FILES):
        # a recording to clone, read and checked now (too short, silent, not audio: exit 2), and read only once:
        # its (24 kHz, 16 kHz) pair is what clone_voice takes
        return load_clip(voice)
    path = find_voice_file(voice)
    if path is not None:
        load_voice(path)  # read and validated now: a bad file is a usage error, found before the model loads
        return path
    if broken:
        raise broken
    close = difflib.get_close_matches(voice, names, n=3)
    where = f"{model} has no voice presets" if not names else f"{model} has no preset {voice!r}"
    hint = f" (close: {', '.join(close)})" if close else ""
    raise VoiceError(
        f"--voice {voice}: no such file, and {where}{hint}; `nanobark voices` lists the presets, "
        "and a voice file is a .npz (as save_voice writes it)"
    )


# ---------------------------------------------------------------- speak


def speak_parser():
    # a table of options reads best one to a line, so the formatter leaves it alone
    # fmt: off
    p = argparse.ArgumentParser(
        prog="nanobark", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SPEAK_EPILOG,
        description="Speak a text with Suno's Bark (nanobark). The language comes from the text; --voice picks "
                    "the speaker (without one, each run is a different speaker).")
    p.add_argument("text", nargs="?", help="the text to speak; '-' or nothing reads standard input")
    p.add_argument("--file", help="read the text from this file (UTF-8)")
    p.add_argument("--out", default="bark.wav", help="output audio file: .wav (16-bit PCM), .flac or .ogg; '-' "
                   "writes raw 16-bit little-endian mono PCM at 24 kHz to standard output (default: bark.wav)")
    p.add_argument("--voice", help="a preset (e.g. v2/en_speaker_6; see `nanobark voices`), a .npz voice file, "
                   "or a recording to clone (.wav, .flac, .ogg) (default: none, a random speaker)")
    p.add_argument("--seed", type=checked(int, check_seed, "--seed"),
                   help="random seed 0..2**63-1, for reproducible output (default: none)")
    for flag, default, what in (("--text-temp", 0.7, "semantic"), ("--waveform-temp", 0.7, "coarse"),
                                ("--fine-temp", 0.5, "fine")):
        p.add_argument(flag, type=checked(float, check_temperature, flag), default=default,
                       help=f"{what} stage temperature (default: {default})")
    p.add_argument("--top-k", type=checked(int, check_top_k, "--top-k"),
                   help="sample only among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=checked(float, check_top_p, "--top-p"),
                   help="nucleus sampling threshold in (0, 1] (default: off)")
    p.add_argument("--min-eos-p", type=checked(float, check_min_eos_p, "--min-eos-p"),
                   help="stop when P(end of speech) reaches this (default: 0.2, 0.05 with --long)")
    p.add_argument("--max-duration", type=checked(float, check_max_duration, "--max-duration"),
                   help="cap the semantic stage at about this many seconds of audio (default: none)")
    p.add_argument("--long", action="store_true", help="speak the text in segments that each fit one generation "
                   "(chosen automatically when the text is over 256 tokens)")
    p.add_argument("--continuity", choices=("voice", "previous"), help="long form: condition every segment on the "
                   "voice, or each on the segment before (default: voice)")
    p.add_argument("--silence", type=checked(float, check_silence, "--silence"),
                   help="long form: seconds of silence between segments (default: 0.25)")
    p.add_argument("--stream", action="store_true", help="long form, segment by segment; with --out - the audio "
                   "is written as each segment is done")
    p.add_argument("--model", default="suno/bark-small",
                   help="suno/bark-small, suno/bark, or a local folder (default: suno/bark-small)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="precision of the three GPTs; half precision is for GPUs (default: float32)")
    p.add_argument("--int8", action="store_true", help="CPU only: int8 weights for the three GPTs, ~2x faster")
    p.add_argument("--compile", action="store_true", help="compile the one-token decode step (torch.compile; "
                   "pays off on a GPU, for long or many generations)")
    p.add_argument("--offload", action="store_true", help="GPU: keep the models on the CPU and move each stage "
                   "to the GPU in turn (less GPU memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--version", action="version", version=f"nanobark {__version__}")
    # fmt: on
    return one_line_errors(p)


def _read_text(p, args):
    """The text from the argument, --file or standard input, at most MAX_TEXT_CHARS characters."""
    if args.file and args.text:
        p.error("give the text either as an argument or with --file, not both")
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as f:
                args.text = f.read(MAX_TEXT_CHARS + 1)
        elif args.text in (None, "-"):
            if sys.stdin is None or sys.stdin.isatty():
                p.error("no text given: pass it as an argument, with --file, or on standard input")
            args.text = sys.stdin.read(MAX_TEXT_CHARS + 1)
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"cannot read the text: {e}")
    if len(args.text) > MAX_TEXT_CHARS:
        p.error(f"the text is over {MAX_TEXT_CHARS:,} characters; split it and speak it in several runs")
    if not args.text.strip():
        p.error("the text is empty")
    if not match_slow_cleanup(args.text).strip():  # what the tokenizer keeps: nothing but spaces left
        p.error("the text has nothing to say: only control or zero-width characters; pass some words")


def _check_writable(out):
    """A file can be written at `out`: its folder exists and is writable, and `out` is not a folder."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or os.path.isdir(out):
        raise ValueError(
            f"cannot write {out}: " + ("it is a folder" if os.path.isdir(out) else "not writable")
        )


def _check_out(p, out):
    if out == "-":
        if sys.stdout is None or sys.stdout.isatty():
            p.error("--out - writes raw audio to standard output, which is a terminal here; pipe it into a "
                    "player (| aplay -f S16_LE -r 24000) or give a file name")  # fmt: skip
        return
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        p.error(f"--out must end in {', '.join(FORMATS)} (got {out!r})")
    try:
        _check_writable(out)
    except ValueError as e:
        p.error(str(e))


def parse_speak(argv):
    p = speak_parser()
    args = p.parse_args(argv)
    _read_text(p, args)
    try:  # before anything is loaded: each of these is a usage error
        device = check_device(args.device)
        check_model(args.model)
        if args.voice is not None:
            args.voice = check_voice(args.voice, args.model)
    except (ValueError, FileNotFoundError) as e:  # VoiceFileNotFoundError is the latter
        p.error(str(e))
    if (args.continuity or args.silence is not None) and not (args.long or args.stream):
        p.error("--continuity and --silence apply to long-form generation; add --long (or --stream)")
    try:
        check_int8(args.int8, device, args.dtype)
    except ValueError as e:
        p.error(f"--{e}")
    if device.type == "cpu" and args.dtype != "float32":
        slower = "about 14x slower end to end" if args.dtype == "float16" else "slower (1.3x per decode step)"
        print(f"note: {args.dtype} on the CPU is {slower} than float32 here (CPUs have few half-precision "
              "kernels); --int8 is the CPU's fast option", file=sys.stderr)  # fmt: skip
    if device.type == "cpu" and args.offload:
        print("note: --offload moves stages between the CPU and an accelerator; on the CPU it does nothing",
              file=sys.stderr)  # fmt: skip
    args.device = str(device)
    _check_out(p, args.out)
    return args


def write_audio(path, audio, sample_rate):
    """Write atomically (a temporary file beside `path`, then renamed): an interrupted run leaves no partial file."""
    import soundfile as sf

    fmt, subtype = FORMATS[os.path.splitext(path)[1].lower()]
    write_atomic(path, lambda tmp: sf.write(tmp, audio, sample_rate, format=fmt, subtype=subtype))


def write_pcm(chunks, out):
    """Each chunk as 16-bit little-endian PCM, flushed as it comes (for aplay/ffplay); -> number of samples."""
    n = 0
    for chunk in chunks:
        out.write(np.round(np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())
        out.flush()
        n += len(chunk)
    return n


def audio_chunks(bark, args):
    """The audio as a list of one array, or for --stream an iterator with one chunk per segment as it is done."""
    if isinstance(args.voice, tuple):  # a recording, loaded by check_voice
        args.voice = bark.clone_voice(args.voice)
    # fmt: off
    kwargs = dict(seed=args.seed, text_temp=args.text_temp, waveform_temp=args.waveform_temp, fine_temp=args.fine_temp,
                  top_k=args.top_k, top_p=args.top_p, max_duration_s=args.max_duration, progress=not args.quiet)
    # fmt: on
    if args.min_eos_p is not None:  # else the API's own default: 0.2, or 0.05 in long form
        kwargs["min_eos_p"] = args.min_eos_p
    long_kwargs = {
        k: v for k, v in (("continuity", args.continuity), ("silence", args.silence)) if v is not None
    }
    if args.stream:
        return stream(bark, args.text, args.voice, **long_kwargs, **kwargs)
    n_tokens = len(bark.tokenizer.encode(normalize_text(args.text)))
    if not args.long and n_tokens > TEXT_LENGTH:
        print(
            f"note: the text is {n_tokens} tokens, more than the {TEXT_LENGTH} one generation reads; speaking it "
            "in segments (--long)",
            file=sys.stderr,
        )
    if args.long or n_tokens > TEXT_LENGTH:
        return [generate_long(bark, args.text, args.voice, **long_kwargs, **kwargs)]
    return [bark.generate(args.text, voice=args.voice, **kwargs)]


def speak(argv):
    args = parse_speak(argv)
    t0 = time.perf_counter()
    bark = Bark.from_pretrained(args.model, device=args.device, dtype=args.dtype, offload=args.offload,
                                compile=args.compile, int8=args.int8)  # fmt: skip
    chunks = audio_chunks(bark, args)
    if args.out == "-":
        n_samples = write_pcm(chunks, sys.stdout.buffer)
    else:
        audio = np.concatenate(list(chunks))
        write_audio(args.out, audio, bark.sample_rate)
        n_samples = len(audio)
    status = f"{n_samples / bark.sample_rate:.2f} s of audio in {time.perf_counter() - t0:.1f} s"
    if args.out == "-":  # standard output carries the audio
        print(f"standard output: {status}", file=sys.stderr)
    else:
        print(f"{args.out}: {status}")


# ---------------------------------------------------------------- voices


def voices(argv):
    p = argparse.ArgumentParser(
        prog="nanobark voices",
        description="List the voice presets, by language. The language of the speech comes from the text; a "
        "preset sets the speaker (v2/ presets are Suno's newer, cleaner ones).",
    )
    one_line_errors(p)
    p.add_argument("--language", choices=sorted(LANGUAGES), help="only this language (default: all)")
    p.add_argument("--model", default="suno/bark-small",
                   help="list this model's presets (default: suno/bark-small, Suno's 13 languages)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        names = preset_names(check_model(args.model))
    except ValueError as e:
        p.error(str(e))
    if not names:
        p.error(f"{args.model} has no voice presets (no speaker_embeddings_path.json); use a .npz voice file")
    by_language = {}
    for name in names:
        code = name.rsplit("/", 1)[-1].split("_")[0]
        by_language.setdefault(code if code in LANGUAGES else "other", []).append(name)
    for code in [c for c in LANGUAGES if c in by_language] + (["other"] if "other" in by_language else []):
        if args.language and code != args.language:
            continue
        print(f"{LANGUAGES.get(code, 'other')} ({code}):" if code != "other" else "other:")
        print("  " + " ".join(sorted(by_language[code], key=lambda n: (not n.startswith("v2/"), n))))
    if not args.language:
        print(f"\n{len(names)} presets. Use one with: nanobark \"...\" --voice v2/en_speaker_6 (presets download "
              "from the Hub on first use).")  # fmt: skip


# ---------------------------------------------------------------- clone


def check_cloning_weights(quantizer, hubert):
    """--quantizer: a local file or folder, or a bare file name of the quantizers' Hub repo; --hubert: a local
    file or folder. Anything else is a usage error, found before the models load."""
    for flag, value, hub_names_ok in (("--quantizer", quantizer, True), ("--hubert", hubert, False)):
        if value is None or os.path.exists(value):
            continue
        if hub_names_ok and os.sep not in value and "/" not in value and value.endswith((".pth", ".pt")):
            continue  # e.g. quantifier_V1_hubert_base_ls960_23.pth, downloaded from the Hub
        where = f", nor a file name in {QUANTIZER_REPO}" if hub_names_ok else ""
        raise FileNotFoundError(f"{flag} {value}: no such file or folder{where}")
    if hubert is not None and os.path.isfile(hubert) and hubert.lower().endswith(AUDIO_FILES):
        raise ValueError(f"--hubert {hubert} is a recording; --hubert takes a copy of {HUBERT_REPO}")


def clone_command(argv):
    p = argparse.ArgumentParser(
        prog="nanobark clone",
        description="Make a Bark voice from a recording of someone speaking (5-12 s of clean speech by one "
        "speaker, ending at the end of a sentence, work best). The first run downloads HuBERT base and the "
        "community's semantic quantizer (English) once.",
    )
    one_line_errors(p)
    p.add_argument("recording", help="a .wav, .flac or .ogg file (any sample rate, mono or stereo)")
    p.add_argument("--out", required=True, help="the voice file to write (.npz), for --voice")
    p.add_argument("--model", default="suno/bark-small", help="the Bark model whose codec encodes the recording "
                   "(default: suno/bark-small; the voice works with suno/bark too)")  # fmt: skip
    p.add_argument("--quantizer", help="a quantizer file (e.g. one trained for another language), or the name of "
                   f"another file in {QUANTIZER_REPO} (default: {QUANTIZER_DEFAULT})")  # fmt: skip
    p.add_argument("--hubert", help=f"a local copy of {HUBERT_REPO} (default: downloaded)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available, else cpu)")
    args = p.parse_args(argv)
    out = args.out if args.out.lower().endswith(".npz") else args.out + ".npz"
    try:  # everything is checked before anything is loaded
        device = check_device(args.device)
        check_model(args.model)
        check_cloning_weights(args.quantizer, args.hubert)
        clip = load_clip(args.recording)
        _check_writable(out)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    t0 = time.perf_counter()
    voice = clone_voice(args.model, clip, quantizer=args.quantizer, hubert=args.hubert, device=device,
                        progress=True)  # fmt: skip
    save_voice(out, voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"])
    print(f"{out}: a voice of {len(voice['semantic_prompt'])} semantic tokens and "
          f"{voice['fine_prompt'].shape[1]} codec frames in {time.perf_counter() - t0:.1f} s; "
          f"use it with: nanobark \"...\" --voice {out}")  # fmt: skip


# ---------------------------------------------------------------- synthesize

SYNTHESIZE_EPILOG = """the manifest:
  corpus.jsonl  one JSON object per line: {"id": "utt1", "text": "Hello.", "voice": "v2/en_speaker_6"}; optional
                voice, seed, long, text_temp, waveform_temp, fine_temp, top_k, top_p, min_eos_p, max_duration
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

exit codes:
  0    done (some rows may have failed: see DIR/errors.jsonl), or nothing left to do
  1    every item failed
  2    bad arguments, or a manifest that cannot be read at all, found before any model is loaded
  130  stopped by Ctrl-C; 143 by SIGTERM; 129 by SIGHUP (what was finished is kept)"""


def manifest_voices(model, folder):
    """A manifest row's voice -> what load_voice gets: a preset of the model, or a .npz voice file (a relative
    path is read from the manifest's folder), read and checked now; else one VoiceError naming it."""
    try:
        names, broken = preset_names(model), None
    except VoiceError as e:  # a damaged speaker_embeddings_path.json matters only if the voice is not a file
        names, broken = [], e

    def check(voice):
        if voice.replace("\\", "/") in names:
            return voice
        if voice.lower().endswith(AUDIO_FILES):
            raise VoiceError(f"voice {voice!r} is a recording; make it a voice once (nanobark clone {voice} "
                             "--out VOICE.npz) and name the .npz")  # fmt: skip
        path = find_voice_file(os.path.join(folder, voice))
        if path is not None:
            load_voice(path)
            return path
        if broken:
            raise broken
        close = difflib.get_close_matches(voice, names, n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise VoiceError(f"unknown voice {voice!r}: {model} has no such preset{hint}, and there is no voice file "
                         f"{os.path.join(folder, voice)}; `nanobark voices` lists the presets")  # fmt: skip

    return check


def _batch_size(value, name):
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def synthesize_parser():
    # fmt: off
    p = argparse.ArgumentParser(
        prog="nanobark synthesize", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SYNTHESIZE_EPILOG,
        description="Speak every text of a manifest into its own audio file, in batches, resumably; under "
                    "torchrun, the items are shared out among the processes (one GPU each).")
    one_line_errors(p)
    p.add_argument("manifest", help="a .jsonl, .csv or .tsv file of id, text and optional columns, or a text "
                   "file with one text per line")
    p.add_argument("--out-dir", required=True, help="the folder for the audio files and manifest.jsonl "
                   "(created if missing; on a shared file system for several machines)")
    p.add_argument("--model", default="suno/bark-small",
                   help="suno/bark-small, suno/bark, or a local folder (default: suno/bark-small)")
    p.add_argument("--batch-size", type=checked(int, _batch_size, "--batch-size"), default=8,
                   help="texts generated together, of about the same length (default: 8)")
    p.add_argument("--seed", type=checked(int, check_seed, "--seed"), default=0,
                   help="base seed: a row without a seed gets this plus a hash of its id (default: 0)")
    p.add_argument("--format", choices=("wav", "flac", "ogg"), default="wav",
                   help="wav and flac: 16-bit PCM; ogg: Vorbis, whose files differ from run to run in a random "
                   "stream number (default: wav)")
    p.add_argument("--overwrite", action="store_true", help="make every item again, even those already done")
    for flag, default, what in (("--text-temp", 0.7, "semantic"), ("--waveform-temp", 0.7, "coarse"),
                                ("--fine-temp", 0.5, "fine")):
        p.add_argument(flag, type=checked(float, check_temperature, flag),
                       help=f"{what} stage temperature, for rows without their own (default: {default})")
    p.add_argument("--top-k", type=checked(int, check_top_k, "--top-k"), help="for rows without their own "
                   "top_k: sample among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=checked(float, check_top_p, "--top-p"),
                   help="for rows without their own top_p: nucleus sampling threshold (default: off)")
    p.add_argument("--min-eos-p", type=checked(float, check_min_eos_p, "--min-eos-p"),
                   help="for rows without their own: stop when P(end of speech) reaches this (default: 0.2, "
                   "0.05 for long items)")
    p.add_argument("--max-duration", type=checked(float, check_max_duration, "--max-duration"),
                   help="for rows without their own: cap the semantic stage at about this many seconds "
                   "(a long item: each segment) (default: none)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available, else cpu; under "
                   "torchrun, cuda is each process's GPU: cuda:LOCAL_RANK)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="precision of the three GPTs; half precision is for GPUs (default: float32)")
    p.add_argument("--int8", action="store_true", help="CPU only: int8 weights for the three GPTs, ~2x faster")
    p.add_argument("--quiet", action="store_true", help="no progress (the summary is still printed)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    # fmt: on
    return p


def parse_synthesize(argv, ranks):
    """-> (args, device, rows, problems); every usage error exits 2 here, before a model is loaded."""
    p = synthesize_parser()
    args = p.parse_args(argv)
    try:
        device = check_device(args.device)
        check_model(args.model)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    if device.type == "cuda" and device.index is None and ranks.world > 1:  # one GPU per process
        if ranks.local >= torch.cuda.device_count():
            p.error(f"process {ranks.local} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                    "GPUs): start at most one process per GPU (torchrun --nproc_per_node)")  # fmt: skip
        device = torch.device("cuda", ranks.local)
    try:
        check_int8(args.int8, device, args.dtype)
    except ValueError as e:
        p.error(f"--{e}")
    out_dir = args.out_dir
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
    folder = os.path.dirname(os.path.abspath(args.manifest))
    try:
        rows, problems = read_manifest(args.manifest, manifest_voices(args.model, folder))
    except ManifestError as e:
        p.error(str(e))
    return args, device, rows, problems


def synthesize_command(argv):
    ranks = Ranks()
    args, device, rows, problems = parse_synthesize(argv, ranks)
    model = (
        args.model + (" int8" if args.int8 else "") + (f" {args.dtype}" if args.dtype != "float32" else "")
    )
    defaults = {name: getattr(args, name) for name in SETTINGS}  # text_temp, ..., max_duration
    job = Job(out_dir=args.out_dir, manifest=args.manifest, model=model, ext=args.format, seed=args.seed,
              batch_size=args.batch_size, defaults=defaults, overwrite=args.overwrite, progress=not args.quiet,
              save=lambda path, audio: write_audio(path, audio, Bark.sample_rate))  # fmt: skip
    ranks.start()
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        bark = None  # every row wrong: nothing to load
        if rows:  # a first run downloads and converts the model once per machine, then every rank loads it
            local_rank_first(ranks, lambda: resolve(args.model))
            bark = Bark.from_pretrained(args.model, device=device, dtype=args.dtype, int8=args.int8)
        totals = run_corpus(bark, rows, problems, job, ranks)
    except KeyboardInterrupt as e:
        if ranks.rank == 0:  # every rank gets the signal; one says so
            print(f"interrupted; the items finished so far are in {args.out_dir}: the same command again makes "
                  "the rest", file=sys.stderr)  # fmt: skip
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        ranks.stop()
    if ranks.rank == 0:
        print(totals.summary(args.out_dir))
    return totals.exit_code()


# ---------------------------------------------------------------- entry


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it cleans up (temporary files) as on Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv=None):
    """The `nanobark` command -> exit code. argparse exits 2 itself on a usage error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "speak"
    convert = lambda a: convert_main(a, adjust=one_line_errors)  # noqa: E731
    run = {"speak": speak, "voices": voices, "clone": clone_command, "convert": convert,
           "synthesize": synthesize_command}[command]  # fmt: skip
    if command != "speak":
        argv = argv[1:]
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # no SIGHUP on Windows
        if sig is not None:
            signal.signal(sig, _stop)
    debug = "--debug" in argv
    if not debug:  # a library warning (a clip outside the advised length, a text cut at 256 tokens): one line
        warnings.formatwarning = lambda message, *args, **kwargs: f"note: {message}\n"
    writes_stdout = "--out=-" in argv or any(a == "--out" and b == "-" for a, b in zip(argv, argv[1:]))
    try:
        return run(argv) or 0
    except BrokenPipeError:  # `nanobark voices | head -1`, or a player that quit: 141, as for SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        if writes_stdout:
            print(
                "note: the program reading the audio stopped reading; the rest was not made", file=sys.stderr
            )
        return 128 + 13
    except KeyboardInterrupt as e:
        done = "the audio streamed so far was written" if writes_stdout else "nothing was written"
        print(f"interrupted; {done}", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except Exception as e:
        if debug:
            raise
        print(f"error: {str(e) or type(e).__name__}", file=sys.stderr)  # never an empty "error:" line
        return 1
