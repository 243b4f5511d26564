"""Text to speech from the command line.

    python scripts/generate.py "Hello, my dog is cute" --out hello.wav
    echo "Hello" | python scripts/generate.py --voice v2/en_speaker_6 --out hello.flac
    python scripts/generate.py --file story.txt --seed 1 --out story.ogg
    python scripts/generate.py --file story.txt --long --continuity previous --out story.wav
    python scripts/generate.py --file story.txt --stream --out - | aplay -f S16_LE -r 24000

Exit codes: 0 done, 1 the generation failed, 2 bad arguments (checked before any work starts).
"""
import argparse
import os
import sys
import tempfile
import time

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Generate speech with nanobark (Suno's Bark).")
    p.add_argument("text", nargs="?", help="the text to speak; '-' or nothing reads standard input")
    p.add_argument("--file", help="read the text from this file")
    p.add_argument("--out", default="bark.wav", help="output audio file: .wav (16-bit PCM), .flac or .ogg; '-' writes "
                   "raw 16-bit little-endian mono PCM at 24 kHz to standard output")
    p.add_argument("--voice", help="preset name (e.g. v2/en_speaker_6) or a .npz voice file")
    p.add_argument("--seed", type=int, help="random seed, for reproducible output")
    p.add_argument("--text-temp", type=float, default=0.7, help="semantic stage temperature (default 0.7)")
    p.add_argument("--waveform-temp", type=float, default=0.7, help="coarse stage temperature (default 0.7)")
    p.add_argument("--fine-temp", type=float, default=0.5, help="fine stage temperature (default 0.5)")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold in (0, 1]")
    p.add_argument("--min-eos-p", type=float,
                   help="stop when P(end of speech) reaches this (default 0.2, 0.05 with --long)")
    p.add_argument("--max-duration", type=float, help="cap the semantic stage at about this many seconds of audio")
    p.add_argument("--long", action="store_true", help="speak the text in segments that each fit one generation "
                   "(chosen automatically when the text is over 256 tokens)")
    p.add_argument("--continuity", choices=("voice", "previous"), help="long form: condition every segment on the "
                   "voice (default), or each on the segment before")
    p.add_argument("--silence", type=float, help="long form: seconds of silence between segments (default 0.25)")
    p.add_argument("--stream", action="store_true", help="long form, segment by segment; with --out - the audio "
                   "is written as each segment is done")
    p.add_argument("--model", default="suno/bark-small", help="Hub id or local folder (default suno/bark-small)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="float32, float16 or bfloat16 for the three GPTs")
    p.add_argument("--offload", action="store_true", help="keep models on the CPU, move each stage to the device in turn")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    args = p.parse_args(argv)

    if args.file and args.text:
        p.error("give the text either as an argument or with --file, not both")
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as f:
                args.text = f.read()
        elif args.text in (None, "-"):
            if sys.stdin is None or sys.stdin.isatty():
                p.error("no text given: pass it as an argument, with --file, or on standard input")
            args.text = sys.stdin.read()
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"cannot read the text: {e}")
    if not args.text.strip():
        p.error("the text is empty")
    for name in ("text_temp", "waveform_temp", "fine_temp", "max_duration"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.top_k is not None and args.top_k < 1:
        p.error("--top-k must be >= 1")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        p.error("--top-p must be in (0, 1]")
    if (args.continuity or args.silence is not None) and not (args.long or args.stream):
        p.error("--continuity and --silence apply to long-form generation; add --long (or --stream)")
    if args.silence is not None and not args.silence >= 0:
        p.error("--silence must be >= 0")
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
    """Write to a temporary file beside `path`, then rename: an interrupted run leaves no partial file."""
    import soundfile as sf
    fmt, subtype = FORMATS[os.path.splitext(path)[1].lower()]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nanobark-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        sf.write(tmp, audio, sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    from nanobark.longform import TEXT_LIMIT
    from nanobark.tokenizer import normalize_text
    kwargs = dict(seed=args.seed, text_temp=args.text_temp, waveform_temp=args.waveform_temp, fine_temp=args.fine_temp,
                  top_k=args.top_k, top_p=args.top_p, max_duration_s=args.max_duration, progress=not args.quiet)
    if args.min_eos_p is not None:  # else the API's own default: 0.2, or 0.05 in long form
        kwargs["min_eos_p"] = args.min_eos_p
    long_kwargs = {k: v for k, v in (("continuity", args.continuity), ("silence", args.silence)) if v is not None}
    if args.stream:
        return bark.stream(args.text, args.voice, **long_kwargs, **kwargs)
    n_tokens = len(bark.tokenizer.encode(normalize_text(args.text)))
    if not args.long and n_tokens > TEXT_LIMIT:
        print(f"note: the text is {n_tokens} tokens, more than the {TEXT_LIMIT} one generation reads; speaking it "
              "in segments (--long)", file=sys.stderr)
    if args.long or n_tokens > TEXT_LIMIT:
        return [bark.generate_long(args.text, args.voice, **long_kwargs, **kwargs)]
    return [bark.generate(args.text, voice=args.voice, **kwargs)]


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
    try:
        from nanobark import Bark
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        print("error: the program reading standard output stopped reading", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        done = "the audio streamed so far was written" if args.out == "-" else "nothing was written"
        print(f"interrupted; {done}", file=sys.stderr)
        return 130
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
