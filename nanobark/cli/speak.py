"""`nanobark "text"` speaks; `nanobark voices` lists the presets; `nanobark clone` makes a voice of a recording.

Each command reads its arguments (no torch yet: --help and argparse's errors answer at once), checks the rest
before any model is loaded (a bad value exits 2 with one line), then imports the models and works.
"""

import io
import os
import sys
import time
from dataclasses import replace

import numpy as np
import soundfile as sf

from .. import __version__
from ..audio_out import pcm16, write_sound
from ..files import NAME_MAX, check_regular, check_utf8_name, read_bounded, read_stream, same_file, write_atomic
from ..layout import TEXT_LENGTH
from ..longform import check_silence, count_tokens, generate_long, needs_segments, stream
from ..settings import check_seed, defaults
from ..tokenizer import MAX_TEXT_CHARS, match_slow_cleanup
from ..voices import (
    AUDIO_FILES,
    LANGUAGES,
    SUNO_PRESETS,
    PresetIndex,
    VoiceError,
    by_language,
    find_voice,
    load_voice,
    save_voice,
    voice_file_name,
)
from .parser import (
    EXIT_CODES,
    Parser,
    checked,
    cloning_options,
    device_options,
    generation_options,
    given_settings,
    model_options,
)

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
if sf.check_format("MP3", "MPEG_LAYER_III"):  # libsndfile 1.1 and later, built with LAME (soundfile's wheels are)
    FORMATS[".mp3"] = ("MP3", "MPEG_LAYER_III")

SPEAK_EPILOG = f"""other commands:
  nanobark voices [--language LANG]     list the voice presets, by language
  nanobark clone RECORDING --out VOICE.npz   make a voice from 5-12 s of someone speaking
  nanobark convert SRC OUT              convert a checkpoint folder into nanobark's layout
  nanobark synthesize --help            many texts (a manifest) to audio files, resumable; torchrun: many GPUs
  nanobark prepare --help               clips and their texts to token files for fine-tuning (docs/finetuning.md)
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


# ---------------------------------------------------------------- checks before loading


def check_model(name):
    """A local checkpoint folder or a Hub id, else one line saying what is wrong (nothing is loaded)."""
    from ..weights.hub import HUB_MODELS, looks_like_hub_id

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


class DamagedModel(VoiceError):
    """A model folder's preset index that cannot be read (a device, not JSON): the model's failure, exit 1, not
    the argument's. A VoiceError, so that find_voice reports it only when the voice is not a file."""


def preset_names(model):
    """The voice presets a model offers, read without loading it: Suno's for a Hub id, else the folder's."""
    if not os.path.isdir(model):
        return list(SUNO_PRESETS)
    index = os.path.join(model, "speaker_embeddings_path.json")
    if not os.path.lexists(index):
        return []
    try:
        check_regular(index, "the preset index")  # else from_dir would say there is none
        return PresetIndex.from_dir(model).names()
    except (VoiceError, OSError) as e:
        raise DamagedModel(str(e)) from None


def check_writable(out):
    """A file can be written at `out`: its folder exists and is writable, and `out` is not a folder."""
    check_utf8_name(out, "cannot write")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or os.path.isdir(out):
        raise ValueError(f"cannot write {out}: " + ("it is a folder" if os.path.isdir(out) else "not writable"))
    size = len(os.fsencode(os.path.basename(out)))
    if size > NAME_MAX:
        raise ValueError(
            f"cannot write {out}: its name is {size} bytes, over the {NAME_MAX} a name may have; give a shorter one"
        )


def check_not_an_input(out, inputs):
    """`out` is none of the files the command reads ((flag, path) pairs): writing it would destroy its input."""
    for flag, path in inputs:
        if path is not None and same_file(out, path):
            raise ValueError(
                f"--out {out} is the file given as {flag} {path}: writing it would replace what this "
                "command reads; give another --out"
            )


def check_runtime(p, args):
    """--device, --dtype, --int8, --threads -> the torch.device; a bad combination is a usage error."""
    from ..device import check_device, check_int8, set_threads

    set_threads(args.threads)
    try:
        device = check_device(args.device)
    except ValueError as e:
        p.error(str(e))
    try:
        check_int8(args.int8, device, args.dtype, getattr(args, "compile", False))  # speak alone has --compile
    except ValueError as e:
        p.error(f"--{e}")
    return device


# ---------------------------------------------------------------- speak


def speak_parser():
    # a table of options reads best one to a line, so the formatter leaves it alone
    # fmt: off
    p = Parser(prog="nanobark", epilog=SPEAK_EPILOG,
               parents=generation_options("sampling", "with --long"),
               description="Speak a text with Suno's Bark (nanobark). The language comes from the text; --voice "
                           "picks the speaker (without one, each run is a different speaker).")
    p.add_argument("text", nargs="?", help="the text to speak; '-' or nothing reads standard input")
    p.add_argument("--file", help="read the text from this file (UTF-8)")
    p.add_argument("--out", default="bark.wav", help="output audio file: .wav (16-bit PCM), "
                   f"{', '.join(list(FORMATS)[1:])}; '-' writes raw 16-bit little-endian mono PCM at 24 kHz to "
                   "standard output")
    p.add_argument("--voice", help="a preset (e.g. v2/en_speaker_6; see `nanobark voices`), a .npz voice file, "
                   "or a recording to clone (.wav, .flac, .ogg) (default: none, a random speaker)")
    p.add_argument("--seed", type=checked(int, check_seed, "--seed"),
                   help="random seed 0..2**63-1, for reproducible output (default: none)")
    p.add_argument("--long", action="store_true", help="speak the text in segments that each fit one generation "
                   "(chosen automatically when the text is over 256 tokens)")
    p.add_argument("--continuity", choices=("voice", "previous"), help="long form: condition every segment on the "
                   "voice, or each on the segment before (default: voice)")
    p.add_argument("--silence", type=checked(float, check_silence, "--silence"),
                   help="long form: seconds of silence between segments (default: 0.25)")
    p.add_argument("--stream", action="store_true", help="long form, segment by segment; with --out - the audio "
                   "is written as each segment is done")
    p.add_argument("--compile", action="store_true", help="compile the one-token decode step (torch.compile; "
                   "pays off on a GPU, for long or many generations)")
    p.add_argument("--offload", action="store_true", help="GPU: keep the models on the CPU and move each stage "
                   "to the GPU in turn (less GPU memory)")
    p.add_argument("--version", action="version", version=f"nanobark {__version__}")
    # fmt: on
    return p


def read_text(p, args):
    """The text from the argument, --file or standard input, at most MAX_TEXT_CHARS characters."""
    if args.file and args.text:
        p.error("give the text either as an argument or with --file, not both")
    text = args.text
    try:
        if args.file:
            # UTF-8 takes at most 4 bytes a character; the characters are counted below
            text = read_bounded(args.file, 4 * MAX_TEXT_CHARS, "--file").decode("utf-8")
        elif text in (None, "-"):
            if sys.stdin is None or sys.stdin.isatty():
                p.error("no text given: pass it as an argument, with --file, or on standard input")
            text = read_stream(sys.stdin.buffer, 4 * MAX_TEXT_CHARS, "standard input").decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"cannot read the text: {e}")
    if len(text) > MAX_TEXT_CHARS:
        p.error(f"the text is over {MAX_TEXT_CHARS:,} characters; split it and speak it in several runs")
    if not text.strip():
        p.error("the text is empty")
    if not match_slow_cleanup(text).strip():  # what the tokenizer keeps: nothing but spaces left
        p.error("the text has nothing to say: only control or zero-width characters; pass some words")
    return text


def check_voice(voice, model):
    """--voice -> a preset name, a voice file's path (read and validated now), or a recording's loaded clip
    (read and checked now, and only once: its (24 kHz, 16 kHz) pair is what clone_voice takes)."""
    from ..audio import load_clip

    kind, ref = find_voice(voice, lambda: preset_names(model))
    if kind == "recording":
        return load_clip(check_utf8_name(ref, "--voice"))
    if kind == "file":
        load_voice(ref)  # a bad file is a usage error, found before the model loads
    return ref


def check_out(p, out, inputs=()):
    if out == "-":
        if sys.stdout is None:
            p.error("--out - writes raw audio to standard output, which is closed here; give a file name")
        if sys.stdout.isatty():
            p.error(
                "--out - writes raw audio to standard output, which is a terminal here; pipe it into a "
                "player (| aplay -f S16_LE -r 24000) or give a file name"
            )
        return
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        p.error(f"--out must end in {', '.join(FORMATS)} (got {out!r})")
    try:
        check_writable(out)
        check_not_an_input(out, inputs)
    except ValueError as e:
        p.error(str(e))


def parse_speak(argv):
    """argv -> the arguments, every one checked (a usage error exits 2 here, before a model is loaded)."""
    p = speak_parser()
    args = p.parse_args(argv)
    args.text = read_text(p, args)
    device = check_runtime(p, args)
    check_out(p, args.out, [("--voice", args.voice), ("--file", args.file)])  # before the voice is read
    try:
        check_model(args.model)
        if args.voice is not None:
            args.voice = check_voice(args.voice, args.model)
    except DamagedModel:
        raise  # the model's file, not the argument: exit 1
    except (ValueError, FileNotFoundError) as e:  # VoiceFileNotFoundError is the latter
        p.error(str(e))
    if (args.continuity or args.silence is not None) and not (args.long or args.stream):
        p.error("--continuity and --silence apply to long-form generation; add --long (or --stream)")
    if device.type == "cpu" and args.dtype != "float32":
        slower = "about 14x slower end to end" if args.dtype == "float16" else "slower (1.3x per decode step)"
        print(
            f"note: {args.dtype} on the CPU is {slower} than float32 here (CPUs have few half-precision "
            "kernels); --int8 is the CPU's fast option",
            file=sys.stderr,
        )
    if device.type == "cpu" and args.offload:
        print(
            "note: --offload moves stages between the CPU and an accelerator; on the CPU it does nothing",
            file=sys.stderr,
        )
    args.device = str(device)
    return args


def audio_frames(path):
    """The frames a read of an audio file to its end gives, or None if it cannot be read to its end (a file cut
    short: a FLAC header may still claim every frame)."""
    try:
        return sum(len(block) for block in sf.blocks(path, blocksize=65536, dtype="int16"))
    except (RuntimeError, OSError, ValueError):  # soundfile.LibsndfileError is a RuntimeError
        return None


def write_audio(path, audio, sample_rate):
    """Write atomically (a temporary file beside `path`, then renamed): an interrupted run leaves no partial file,
    and a file that does not read back whole (a full disk) replaces nothing."""
    fmt, subtype = FORMATS[os.path.splitext(path)[1].lower()]
    if fmt != "MP3":

        def whole(tmp):
            n = audio_frames(tmp)
            return None if n == len(audio) else f"{n or 0} of its {len(audio)} samples read back"

        write_atomic(path, lambda tmp: write_sound(tmp, audio, sample_rate, fmt, subtype=subtype), check=whole)
        return
    # LAME's writer says nothing when a full disk cuts the file, and a cut MP3 still reads back whole (its header
    # counts the frames; and mpg123, reading it, prints notes on stderr): it is encoded in memory, its bytes
    # written here (a short write raises), and their count checked
    encoded = io.BytesIO()
    write_sound(encoded, audio, sample_rate, fmt, subtype=subtype)
    data = encoded.getvalue()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    def all_bytes(tmp):
        size = os.path.getsize(tmp)
        return None if size == len(data) else f"{size} of its {len(data)} bytes written"

    write_atomic(path, write, check=all_bytes)


def write_pcm(chunks, out):
    """Each chunk as 16-bit little-endian PCM, flushed as it comes (for aplay/ffplay); -> number of samples."""
    n = 0
    for chunk in chunks:
        out.write(pcm16(chunk).tobytes())
        out.flush()
        n += len(chunk)
    return n


def audio_chunks(bark, args, voice):
    """The audio as a list of one array, or for --stream an iterator with one chunk per segment as it is done."""
    long = args.long or args.stream
    if not long:
        n = count_tokens(args.text, bark.tokenizer)
        if needs_segments(n):
            print(
                f"note: the text is {n} tokens, more than the {TEXT_LENGTH} one generation reads; "
                "speaking it in segments (--long)",
                file=sys.stderr,
            )
            long = True
    settings = replace(defaults(long), **given_settings(args))  # the flags are Settings' fields
    how = dict(seed=args.seed, settings=settings, progress=not args.quiet)
    if not long:
        return [bark.generate(args.text, voice=voice, **how)]
    how.update({k: v for k, v in (("continuity", args.continuity), ("silence", args.silence)) if v is not None})
    if args.stream:
        return stream(bark, args.text, voice, **how)
    return [generate_long(bark, args.text, voice, **how)]


def clone_once(bark, args):
    """A recording, loaded by check_voice -> a voice made with this model's codec, kept in the cache: the same
    recording in the next run is not cloned again (minutes on a CPU)."""
    from ..audio import AudioError
    from ..cloning import clone_voice

    try:
        return clone_voice(bark.path, args.voice, device=bark.device, progress=not args.quiet, cache=True)
    except AudioError as e:  # the recording clones into nothing (all-0 codes): the user's file, as in clone
        speak_parser().error(str(e))


def speak(argv):
    args = parse_speak(argv)
    from ..bark import Bark

    t0 = time.perf_counter()
    bark = Bark.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, offload=args.offload, compile=args.compile, int8=args.int8
    )
    voice = clone_once(bark, args) if isinstance(args.voice, tuple) else args.voice
    chunks = audio_chunks(bark, args, voice)
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
    p = Parser(
        prog="nanobark voices",
        epilog=EXIT_CODES,
        parents=[model_options("list this model's presets (suno/bark-small: Suno's 13 languages)")],
        description="List the voice presets, by language. The language of the speech comes from the "
        "text; a preset sets the speaker (v2/ presets are Suno's newer, cleaner ones).",
    )
    p.add_argument("--language", choices=sorted(LANGUAGES), help="only this language (default: all)")
    args = p.parse_args(argv)
    try:
        check_model(args.model)
    except ValueError as e:
        p.error(str(e))
    names = preset_names(args.model)  # a damaged index is the model's failure: exit 1
    if not names:
        p.error(f"{args.model} has no voice presets (no speaker_embeddings_path.json); use a .npz voice file")
    for code, group in by_language(names).items():
        if args.language and code != args.language:
            continue
        print(f"{LANGUAGES.get(code, 'other')} ({code}):" if code != "other" else "other:")
        print("  " + " ".join(group))
    if not args.language:
        print(
            f'\n{len(names)} presets. Use one with: nanobark "..." --voice v2/en_speaker_6 (presets download '
            "from the Hub on first use)."
        )


# ---------------------------------------------------------------- clone


def check_cloning_weights(quantizer, hubert):
    """--quantizer: a local file or folder, or a bare file name of the quantizers' Hub repo; --hubert: a local
    file or folder. Anything else is a usage error, found before the models load."""
    from ..weights.hub import HUBERT_REPO, QUANTIZER_FILE, QUANTIZER_REPO

    for flag, value, hub_names_ok in (("--quantizer", quantizer, True), ("--hubert", hubert, False)):
        if value is None or os.path.exists(value):
            continue
        if hub_names_ok and os.sep not in value and "/" not in value and value.endswith((".pth", ".pt")):
            continue  # e.g. quantifier_V1_hubert_base_ls960_23.pth, downloaded from the Hub
        where = f", nor a file name in {QUANTIZER_REPO}" if hub_names_ok else ""
        raise FileNotFoundError(f"{flag} {value}: no such file or folder{where}")
    for flag, value, takes in (("--quantizer", quantizer, "a quantizer .pth file"), ("--hubert", hubert, HUBERT_REPO)):
        if value is not None and os.path.isfile(value) and value.lower().endswith(AUDIO_FILES):
            raise ValueError(f"{flag} {value} is a recording; {flag} takes {takes}")
    converted = quantizer is not None and os.path.isfile(os.path.join(quantizer, QUANTIZER_FILE))
    if quantizer is not None and os.path.isdir(quantizer) and not converted:
        raise ValueError(
            f"--quantizer {quantizer} is a folder without {QUANTIZER_FILE}; pass the quantizer's .pth file "
            "(a folder is only one nanobark converted it into)"
        )


def clone(argv):
    # fmt: off
    p = Parser(prog="nanobark clone", epilog=EXIT_CODES,
               parents=[model_options("the Bark model whose codec encodes the recording (the voice works with "
                                      "suno/bark too)"), device_options(precision=False), cloning_options()],
               description="Make a Bark voice from a recording of someone speaking (5-12 s of clean speech by one "
               "speaker, ending at the end of a sentence, work best). The first run downloads HuBERT base and the "
               "community's semantic quantizer (English) once.")
    p.add_argument("recording", help="a .wav, .flac or .ogg file (any sample rate, mono or stereo)")
    p.add_argument("--out", required=True, help="the voice file to write (.npz), for --voice")
    # fmt: on
    args = p.parse_args(argv)
    from ..audio import AudioError, load_clip
    from ..cloning import clone_voice
    from ..device import check_device, set_threads

    out = voice_file_name(args.out)
    set_threads(args.threads)
    try:  # everything is checked before anything is loaded
        device = check_device(args.device)
        check_model(args.model)
        check_cloning_weights(args.quantizer, args.hubert)
        check_writable(out)
        check_not_an_input(
            out, [("recording", args.recording), ("--quantizer", args.quantizer), ("--hubert", args.hubert)]
        )
        clip = load_clip(check_utf8_name(args.recording, "recording"))
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    t0 = time.perf_counter()
    try:
        voice = clone_voice(
            args.model, clip, quantizer=args.quantizer, hubert=args.hubert, device=device, progress=True
        )
    except AudioError as e:  # the user's recording clones into nothing (all-0 codes): not a failure of ours
        p.error(str(e))
    save_voice(out, voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"])
    print(
        f"{out}: a voice of {len(voice['semantic_prompt'])} semantic tokens and "
        f"{voice['fine_prompt'].shape[1]} codec frames in {time.perf_counter() - t0:.1f} s; "
        f'use it with: nanobark "..." --voice {out}'
    )
