"""`nanobark prepare`: a manifest of clips (id, text, audio) -> the token files fine-tuning trains on, resumably;
under torchrun the clips are shared out among the processes (the work itself: corpus.py, as for synthesize).

    OUT/tokens/<id>.npz   text      (n,)   int64  Tokenizer.encode of the normalized text (no offset, no padding)
                          semantic  (S,)   int64  0..9999, ~50/s: HuBERT + the quantizer, as voice cloning makes them
                          codes     (8, T) int64  0..1023, 75 frames/s: the EnCodec encoder's 8 codebooks
    OUT/manifest.jsonl    a line per clip done; OUT/errors.jsonl: the wrong rows and failed clips, by line

The semantic ids and codes come from cloning.tokens, the function voice cloning calls: a clip prepared here
and the same recording cloned give the same ids (a voice keeps their last 256). The file format, and its
checks, are train/data.py's, which training reads them with.
"""

import os
import time

from ..layout import COARSE_RATE_HZ, TEXT_LENGTH
from ..longform import count_tokens, needs_segments
from ..train.data import TOKENS, Clip, DataError, check_clip, read_clip, write_clip
from .manifest import ManifestError, Problem, read_manifest
from .parser import EXIT_CODES, Parser, cloning_options, device_options, model_options, run_options
from .speak import check_cloning_weights, check_model
from .synthesize import check_foreign, check_out_dir, rank_device

# one generation makes at most 767 semantic ids and the EOS, ~15.3 s at HuBERT's 50 frames a second: the
# semantic stage cannot learn to speak a longer clip whole
MAX_CLIP_SECONDS = 15.0

PREPARE_EPILOG = f"""the manifest:
  clips.jsonl   one JSON object per line: {{"id": "utt1", "text": "Hello there.", "audio": "wavs/utt1.wav"}}
  clips.csv     a header row id,text,audio, then a row per clip (.tsv: tab-separated)
  An audio path is read from the manifest's folder and must stay inside it (no '..', no absolute path or
  symbolic link elsewhere). Clips: 1 to {MAX_CLIP_SECONDS:g} s of one speaker, any rate, mono or stereo.

out:
  DIR/tokens/<id>.npz (text, semantic and codes, int64), and DIR/manifest.jsonl: a line per clip done.
  A wrong row or a clip that cannot be used (unreadable, too short, too long, silent, a text over
  {TEXT_LENGTH} tokens) is listed in DIR/errors.jsonl with its line, and the others go on. Run the same command
  again after a crash: what is done is skipped.

examples:
  nanobark prepare clips.jsonl --out-dir prepared --model suno/bark-small
  torchrun --nproc_per_node=4 -m nanobark prepare clips.jsonl --out-dir prepared --threads 1

The semantic ids come from the community's quantizer (HuBERT base + an LSTM trained on Bark's own output),
an approximation of Bark's withheld semantic tokenizer: see docs/finetuning.md.

{EXIT_CODES}"""


def prepare_parser():
    # fmt: off
    p = Parser(prog="nanobark prepare", epilog=PREPARE_EPILOG,
               parents=[model_options("the Bark model whose tokenizer and codec encoder make the tokens"),
                        device_options("; under torchrun, cuda is each process's GPU: cuda:LOCAL_RANK",
                                       precision=False), cloning_options(), run_options()],
               description="Turn a manifest of clips (id, text, audio) into the token files that fine-tuning "
                           "trains on, resumably; under torchrun the clips are shared out among the processes.")
    p.add_argument("manifest", help="a .jsonl, .csv or .tsv file with the columns id, text and audio")
    p.add_argument("--out-dir", required=True, help="the folder for tokens/ and manifest.jsonl (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="make every clip's tokens again, even those done")
    # fmt: on
    return p


def clip_paths(folder):
    """A row's audio -> the file to read: a path from the manifest's folder, which it may not leave (by '..', an
    absolute path or a symbolic link). A manifest names its own clips, so a corpus moves as one folder, and a
    manifest from elsewhere reads nothing else of the machine."""
    root = os.path.realpath(folder)

    def check(audio):
        if "\0" in audio:
            raise ValueError(f"audio {audio!r} holds a NUL character; a path cannot")
        path = os.path.realpath(os.path.join(root, audio))
        if os.path.commonpath([root, path]) != root:
            raise ValueError(
                f"audio {audio!r} is outside the manifest's folder {root}; put the clips in that folder (or below "
                "it) and name them from there"
            )
        return path

    return check


def check_prepare(p, args, ranks):
    """-> (device, rows, problems); every usage error exits 2 here, before a model is loaded."""
    from ..device import check_device, set_threads

    set_threads(args.threads)
    try:
        device = rank_device(p, check_device(args.device), ranks)
        check_model(args.model)
        check_cloning_weights(args.quantizer, args.hubert)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    check_out_dir(p, args)
    try:
        rows, problems = read_manifest(args.manifest, check_audio=clip_paths(os.path.dirname(args.manifest) or "."))
    except ManifestError as e:
        p.error(str(e))
    return device, rows, problems


def clip_frames(path):
    """The codec frames of a token file that reads back whole and valid (train.data's checks), else None."""
    folder, name = os.path.split(path)
    try:
        return read_clip(os.path.dirname(folder), name.removesuffix(".npz")).codes.shape[1]
    except DataError:  # missing, cut short, or not what training accepts
        return None


def save_clip(path, clip):
    """write_clip, to path's clip (OUT/tokens/<id>.npz): atomically."""
    write_clip(os.path.dirname(os.path.dirname(path)), clip.id, clip.text, clip.semantic, clip.codes)


# ---------------------------------------------------------------- the work


class Preparation:
    """What `prepare` makes of its items (corpus.py's maker): a clip's tokens, one clip at a time (a batch would
    pad the shorter clips, and padding changes HuBERT's features and so the semantic ids)."""

    def __init__(self, tokenizer, models):
        self.tokenizer = tokenizer
        self.models = models  # (encoder, hubert, quantizer): cloning.cloning_models

    def plan(self, rows, job):
        """Rows -> (items, problems): a text of no tokens, or of more than one generation reads, is a problem."""
        from .corpus import Item

        items, problems = [], []
        for row in rows:
            n = count_tokens(row.text, self.tokenizer)
            if n and not needs_segments(n):  # one generation reads it whole
                items.append(Item(row, f"{TOKENS}/{row.id}.npz", None, {}, n))
                continue
            why = (
                "the text gives no tokens (only control characters?)"
                if n == 0
                else f"the text is {n} tokens, over the {TEXT_LENGTH} one generation reads; cut the clip and its "
                "text into shorter ones"
            )
            problems.append(Problem(row.line, row.id, f"{job.manifest} line {row.line}: {why}"))
        return items, problems

    def units(self, items, job):
        return [[it] for it in items]

    def attempt(self, unit):
        from ..audio import load_clip
        from ..cloning import tokens

        (item,) = unit
        t0 = time.perf_counter()
        try:
            wav24, wav16 = load_clip(item.row.audio_ref, max_seconds=MAX_CLIP_SECONDS, whole=True)
            semantic, codes = tokens(wav24, wav16, *self.models)
            clip = Clip(item.row.id, self.tokenizer.text_ids(item.row.text), semantic, codes)
            result = check_clip(clip, f"clip {item.row.id!r}")  # what training will accept, checked now
        except Exception as e:  # this clip fails; the others go on
            result = e
        return [(item, result, time.perf_counter() - t0)]


def prepare(argv):
    p = prepare_parser()
    args = p.parse_args(argv)
    import torch

    from ..cloning import cloning_folders, cloning_models
    from ..tokenizer import Tokenizer
    from .corpus import Job, Ranks, execute, local_rank_first

    ranks = Ranks()
    device, rows, problems = check_prepare(p, args, ranks)
    os.makedirs(os.path.join(args.out_dir, TOKENS), exist_ok=True)
    if not args.overwrite:
        check_foreign(p, args.out_dir, [f"{TOKENS}/{r.id}.npz" for r in rows])
    weights = [args.model, args.hubert or "hubert-base-ls960", args.quantizer or "the default quantizer"]
    job = Job(
        out_dir=args.out_dir,
        manifest=args.manifest,
        model=" + ".join(weights),  # the ids depend on all three: another one makes every clip again
        ext="npz",
        overwrite=args.overwrite,
        progress=not args.quiet,
        save=save_clip,
        frames=clip_frames,
        length=lambda clip: clip.codes.shape[1],
        rate=COARSE_RATE_HZ,
        folder=TOKENS,
    )

    def load():  # a first run downloads and converts the weights once per machine, then every rank loads them
        if device.type == "cuda":
            torch.cuda.set_device(device)
        local_rank_first(ranks, lambda: cloning_folders(args.model, args.quantizer, args.hubert))
        folders = cloning_folders(args.model, args.quantizer, args.hubert)
        return Preparation(Tokenizer.from_dir(folders[0]), cloning_models(folders, device))

    return execute(job, rows, problems, ranks, load)
