"""Text to speech from the command line.

    python scripts/generate.py "Hello, my dog is cute" --out hello.wav
    echo "Hello" | python scripts/generate.py --voice v2/en_speaker_6 --out hello.flac
    python scripts/generate.py --file story.txt --seed 1 --out story.ogg
    python scripts/generate.py --file story.txt --long --continuity previous --out story.wav
    python scripts/generate.py --file story.txt --stream --out - | aplay -f S16_LE -r 24000

Exit codes: 0 done, 1 the generation failed, 2 bad arguments (checked before any work starts), 130 / 143 / 129
interrupted by Ctrl-C / SIGTERM / SIGHUP (nothing half-written is left).
"""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark import Bark  # noqa: E402
from nanobark.bark import check_device  # noqa: E402
from nanobark.files import write_atomic  # noqa: E402
from nanobark.layout import TEXT_LENGTH  # noqa: E402
from nanobark.longform import check_silence, generate_long, stream  # noqa: E402
from nanobark.sampling import check_max_duration, check_min_eos_p, check_temperature, check_top_k, check_top_p  # noqa: E402
from nanobark.tokenizer import normalize_text  # noqa: E402

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
MAX_TEXT_CHARS = 1_000_000  # a long book; more is read no further (--file /dev/zero would fill the memory)


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


def parse_args(argv):
    # a table of options reads best one to a line, so the formatter leaves it alone
    # fmt: off
    p = argparse.ArgumentParser(description="Generate speech with nanobark (Suno's Bark).")
    p.add_argument("text", nargs="?", help="the text to speak; '-' or nothing reads standard input")
    p.add_argument("--file", help="read the text from this file")
    p.add_argument("--out", default="bark.wav", help="output audio file: .wav (16-bit PCM), .flac or .ogg; '-' "
                   "writes raw 16-bit little-endian mono PCM at 24 kHz to standard output")
    p.add_argument("--voice", help="preset name (e.g. v2/en_speaker_6) or a .npz voice file")
    p.add_argument("--seed", type=int, help="random seed, for reproducible output")
    for flag, default, what in (("--text-temp", 0.7, "semantic"), ("--waveform-temp", 0.7, "coarse"),
                                ("--fine-temp", 0.5, "fine")):
        p.add_argument(flag, type=checked(float, check_temperature, flag), default=default,
                       help=f"{what} stage temperature (default {default})")
    p.add_argument("--top-k", type=checked(int, check_top_k, "--top-k"),
                   help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=checked(float, check_top_p, "--top-p"), help="nucleus sampling threshold in (0, 1]")
    p.add_argument("--min-eos-p", type=checked(float, check_min_eos_p, "--min-eos-p"),
                   help="stop when P(end of speech) reaches this (default 0.2, 0.05 with --long)")
    p.add_argument("--max-duration", type=checked(float, check_max_duration, "--max-duration"),
                   help="cap the semantic stage at about this many seconds of audio")
    p.add_argument("--long", action="store_true", help="speak the text in segments that each fit one generation "
                   "(chosen automatically when the text is over 256 tokens)")
    p.add_argument("--continuity", choices=("voice", "previous"), help="long form: condition every segment on the "
                   "voice (default), or each on the segment before")
    p.add_argument("--silence", type=checked(float, check_silence, "--silence"),
                   help="long form: seconds of silence between segments (default 0.25)")
    p.add_argument("--stream", action="store_true", help="long form, segment by segment; with --out - the audio "
                   "is written as each segment is done")
    p.add_argument("--model", default="suno/bark-small", help="Hub id or local folder (default suno/bark-small)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="float32, float16 or bfloat16 for the three GPTs")
    p.add_argument("--offload", action="store_true", help="keep models on the CPU, move each stage to the device "
                   "in turn")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    # fmt: on
    args = p.parse_args(argv)

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
    if args.device:
        try:  # before anything is loaded: a device this torch cannot use is a usage error
            check_device(args.device)
        except ValueError as e:
            p.error(str(e))
    if (args.continuity or args.silence is not None) and not (args.long or args.stream):
        p.error("--continuity and --silence apply to long-form generation; add --long (or --stream)")
    if args.out == "-":
        return args
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in FORMATS:
        p.error(f"--out must end in {', '.join(FORMATS)} (got {args.out!r})")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        p.error(f"cannot write {args.out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or os.path.isdir(args.out):
        p.error(f"cannot write {args.out}: not writable")
    return args


def write_audio(path, audio, sample_rate):
    """Write atomically (a temporary file beside `path`, then renamed): an interrupted run leaves no partial file."""
    import soundfile as sf

    fmt, subtype = FORMATS[os.path.splitext(path)[1].lower()]
    write_atomic(path, lambda tmp: sf.write(tmp, audio, sample_rate, format=fmt, subtype=subtype))


def write_pcm(chunks, stream):
    """Each chunk as 16-bit little-endian PCM, flushed as it comes (for aplay/ffplay); -> number of samples."""
    import numpy as np

    n = 0
    for chunk in chunks:
        stream.write(np.round(np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())
        stream.flush()
        n += len(chunk)
    return n


def audio_chunks(bark, args):
    """The audio as a list of one array, or for --stream an iterator with one chunk per segment as it is done."""
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


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it cleans up (temporary files) as on Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv=None):
    args = parse_args(argv)
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # no SIGHUP on Windows
        if sig is not None:
            signal.signal(sig, _stop)
    try:
        t0 = time.perf_counter()
        bark = Bark.from_pretrained(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
        chunks = audio_chunks(bark, args)
        if args.out == "-":
            n_samples = write_pcm(chunks, sys.stdout.buffer)
        else:
            import numpy as np

            audio = np.concatenate(list(chunks))
            write_audio(args.out, audio, bark.sample_rate)
            n_samples = len(audio)
    except BrokenPipeError:
        # no second error when Python flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: the program reading standard output stopped reading", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        done = "the audio streamed so far was written" if args.out == "-" else "nothing was written"
        print(f"interrupted; {done}", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except Exception as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    status = f"{n_samples / bark.sample_rate:.2f} s of audio in {time.perf_counter() - t0:.1f} s"
    if args.out == "-":  # standard output carries the audio
        print(f"standard output: {status}", file=sys.stderr)
    else:
        print(f"{args.out}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
