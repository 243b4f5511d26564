"""Prepared clips: PREPARED/manifest.jsonl names them, PREPARED/tokens/<id>.npz holds each one's tokens.

    text      (n,)    int64  the tokenizer's ids (Tokenizer.encode), before text_prompt's offset and padding
    semantic  (S,)    int64  0..9999, ~49.9/s, from HuBERT + the quantizer, as voice cloning makes them
    codes     (8, T)  int64  0..1023, 75 frames/s, EnCodec 24 kHz's 8 codebooks

`nanobark prepare` writes these with write_clip; training reads them with read_clips. Every array is checked
when it is read, so a damaged shard is one error naming its file, before any step is taken.
"""

import hashlib
import io
import json
import os
import zipfile
from typing import NamedTuple

import numpy as np

from ..files import MB, read_bounded, write_atomic
from ..layout import (
    CODEBOOK_SIZE,
    MAX_SEMANTIC_TOKENS,
    N_FINE,
    SEMANTIC_VOCAB_SIZE,
    TEXT_LENGTH,
    TEXT_OFFSET,
    TEXT_PAD,
    check_ids,
)

MANIFEST, TOKENS = "manifest.jsonl", "tokens"
MAX_MANIFEST = 256 * MB
MAX_CLIP = 64 * MB  # one clip's .npz: 8 x 15 s x 75 int64 codes is 72 kB; far more is not a clip
# the longest clip the semantic stage can learn whole: generation makes at most 768 tokens, the last the EOS
MAX_SEMANTIC = MAX_SEMANTIC_TOKENS - 1
TEXT_VOCAB = TEXT_PAD - TEXT_OFFSET  # tokenizer ids below this stay below the pad id once offset


class DataError(ValueError):
    """Prepared data that cannot be trained on."""


class Clip(NamedTuple):
    id: str
    text: np.ndarray  # (n,)
    semantic: np.ndarray  # (S,)
    codes: np.ndarray  # (8, T)


def clip_path(folder, id_):
    return os.path.join(folder, TOKENS, f"{id_}.npz")


def check_id(id_, where):
    """An id names a file inside PREPARED/tokens/: no folder, no hidden or parent name."""
    if not isinstance(id_, str) or not id_ or id_.startswith(".") or any(c in id_ for c in "/\\\0"):
        raise DataError(f"{where}: id {id_!r} is not a plain file name; ids name files in {TOKENS}/, fix the row")
    return id_


def write_clip(folder, id_, text, semantic, codes):
    """Write one clip's tokens atomically to folder/tokens/<id>.npz (the arrays checked first)."""
    clip = check_clip(Clip(check_id(id_, "write_clip"), text, semantic, codes), f"clip {id_!r}")
    os.makedirs(os.path.join(folder, TOKENS), exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
            np.savez(f, text=clip.text, semantic=clip.semantic, codes=clip.codes)

    return write_atomic(clip_path(folder, id_), write)


def check_clip(clip, what):
    """The arrays' kinds, shapes and ranges, and what the stages can hold: one DataError naming `what`."""
    text = check_ids(clip.text, f"{what}: text", TEXT_VOCAB, error=DataError)
    semantic = check_ids(clip.semantic, f"{what}: semantic", SEMANTIC_VOCAB_SIZE, error=DataError)
    codes = check_ids(clip.codes, f"{what}: codes", CODEBOOK_SIZE, rows=N_FINE, error=DataError)
    if len(text) > TEXT_LENGTH:
        raise DataError(
            f"{what}: its text is {len(text)} tokens, longer than the {TEXT_LENGTH} the semantic model reads "
            "(generation would drop the rest); split the clip or leave it out of the manifest"
        )
    if len(semantic) > MAX_SEMANTIC:
        raise DataError(
            f"{what}: it has {len(semantic)} semantic tokens, more than the {MAX_SEMANTIC} one generation makes "
            f"(~{MAX_SEMANTIC / 49.9:.1f} s); cut the clip shorter or leave it out of the manifest"
        )
    return Clip(clip.id, text, semantic, codes)


def read_clip(folder, id_):
    path = clip_path(folder, id_)
    try:
        with np.load(io.BytesIO(read_bounded(path, MAX_CLIP, "the clip")), allow_pickle=False) as z:
            clip = Clip(id_, z["text"], z["semantic"], z["codes"])
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:  # BadZipFile: a file cut short
        raise DataError(f"{path} is not a prepared clip ({e}); prepare it again") from None
    return check_clip(clip, path)


def manifest_ids(folder):
    """The ids of PREPARED/manifest.jsonl in order (a repeated id counts once)."""
    path = os.path.join(folder, MANIFEST)
    try:
        lines = read_bounded(path, MAX_MANIFEST, "the manifest").decode("utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{folder} has no {MANIFEST}; run `nanobark prepare` to make it") from None
    ids = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path} line {n} is not JSON; prepare the data again") from None
            ids.append(check_id(row.get("id") if isinstance(row, dict) else None, f"{path} line {n}"))
    return list(dict.fromkeys(ids))


def is_val(id_, val_fraction):
    """A clip is held out by a hash of its id: the split stays the same when clips are added."""
    return int(hashlib.sha1(id_.encode()).hexdigest()[:8], 16) < val_fraction * 16**8


def read_clips(folder, val_fraction=0.1):
    """-> (train clips, val clips) in manifest order. No training clip is an error."""
    clips = [read_clip(folder, i) for i in manifest_ids(folder)]
    train = [c for c in clips if not is_val(c.id, val_fraction)]
    val = [c for c in clips if is_val(c.id, val_fraction)]
    if not train:
        raise DataError(
            f"{folder} has no clips to train on ({len(clips)} in {MANIFEST}, {len(val)} held out for evaluation); "
            "prepare more clips, or lower val_fraction"
        )
    return train, val
