"""A corpus manifest in: JSON Lines, CSV/TSV or plain text -> checked rows, and the rows that are wrong.

    rows, problems = read_manifest("corpus.jsonl")    # -> [Row], [Problem(line, id, message)]

    corpus.jsonl   {"id": "utt1", "text": "Hello.", "voice": "v2/en_speaker_6", "seed": 7, "long": false, ...}
    corpus.csv     a header row naming the same columns, then one row per utterance (.tsv: tab-separated)
    anything else  plain text, one utterance per line; the ids come from the line numbers (line-0007)

A training manifest (nanobark prepare: read_manifest(..., check_audio=...)) has the columns id, text and audio,
all three required, in JSON Lines or CSV/TSV: {"id": "utt1", "text": "Hello.", "audio": "clips/utt1.wav"}.

Only `id` and `text` are required (plain text has neither column). Blank lines are skipped. A row that is
wrong (not JSON, no text, a duplicate or unsafe id, an unknown column or voice, a bad number) becomes a
Problem naming its line, and the others go on; a file that cannot be read at all raises ManifestError.
"""

import csv
import dataclasses
import difflib
import io
import json
import math
import os
from typing import NamedTuple, Optional

from ..files import NotAFileError, check_utf8_name, read_bounded
from ..longform import check_silence
from ..settings import Settings, check_seed
from ..tokenizer import MAX_TEXT_CHARS, normalize_text

# the per-row sampling settings, a column per Settings field: column -> (parse a CSV cell, Settings' check)
SETTINGS = {f.name: (f.metadata["parse"], f.metadata["check"]) for f in dataclasses.fields(Settings)}
COLUMNS = ("id", "text", "voice", "seed", "long", "silence", *SETTINGS)
TRAINING_COLUMNS = ("id", "text", "audio")  # a clip and what it says
MAX_MANIFEST_BYTES = 256 << 20  # ~1 million rows of 250 characters; a larger corpus is split into manifests
MAX_ID_BYTES = 200  # a file name is at most 255 bytes, and the atomic write's temporary name adds ~20
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": None}


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing, not UTF-8, a CSV header that is wrong, no rows)."""


class Problem(NamedTuple):
    line: int  # 1-based, in the manifest file
    id: Optional[str]  # None when the row has no usable id
    message: str  # names the file and the line


class Row(NamedTuple):
    line: int
    id: str
    text: str
    voice: Optional[str]  # as written in the manifest (recorded in the output)
    voice_ref: Optional[str]  # what Bark.load_voice gets: the preset name, or the voice file's path
    seed: Optional[int]  # None: the job's base seed plus a hash of the id
    long: bool
    settings: dict  # only the settings the row gives; the job's defaults fill in the rest
    silence: Optional[float] = None  # seconds between the segments of a long item; None: the job's
    audio: Optional[str] = None  # a training manifest's clip, as written (recorded in the output)
    audio_ref: Optional[str] = None  # the file that is read: check_audio's answer


class RowError(ValueError):
    """One row's problem (becomes a Problem; never escapes read_manifest)."""


def check_id(value):
    """An id is the name of its audio file: a non-empty string, no path separators, not hidden, not too long."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"the id must be a non-empty string, got {value!r}")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise RowError(f"id {value!r} has a path separator or is '.'/'..'; an id names one file in --out-dir")
    if value.startswith(".") or any(c < " " or c == "\x7f" for c in value) or value != value.strip():
        raise RowError(
            f"id {value!r} starts with '.', or holds a control character or outer spaces; use letters, digits, '-', '_'"
        )
    try:
        size = len(check_utf8_name(value, "id", "an id names a file: use UTF-8 text").encode("utf-8"))
    except ValueError as e:  # a lone surrogate, from a \ud800 or \udcff escape in JSON
        raise RowError(str(e)) from None
    if size > MAX_ID_BYTES:
        raise RowError(f"the id is {size} bytes, over {MAX_ID_BYTES}; a file name is at most 255")
    return value


def check_text(value):
    if not isinstance(value, str):
        raise RowError(f"text must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise RowError(f"the text is {len(value):,} characters, over {MAX_TEXT_CHARS:,}; split it into rows")
    try:
        normalize_text(value)
    except ValueError:
        raise RowError("the text is empty") from None
    return value


def _cell(column, value, parse, check):
    """A JSON value or a CSV cell (a string) -> the checked value, or RowError naming the column."""
    if isinstance(value, str):  # CSV, or a quoted number in JSON: read it as the column's type
        try:
            value = parse(value.strip())
        except ValueError:
            kind = "an integer" if parse is int else "a number"
            raise RowError(f"{column} must be {kind}, got {value!r}") from None
    if isinstance(value, float) and parse is int and value.is_integer() and math.isfinite(value):
        value = int(value)  # "top_k": 50.0
    try:
        return check(value, name=column)
    except ValueError as e:
        raise RowError(str(e)) from None


def _boolean(value):
    if isinstance(value, str):
        if value.strip().lower() not in BOOLEANS:
            raise RowError(f"long must be true or false, got {value!r}")
        return bool(BOOLEANS[value.strip().lower()])
    if not isinstance(value, bool):
        raise RowError(f"long must be true or false, got {value!r}")
    return value


def _unknown(columns, known=COLUMNS):
    hints = []
    for c in columns:
        close = difflib.get_close_matches(str(c), known, n=1)
        hints.append(f"{c!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown column {', '.join(hints)}; the columns are {', '.join(known)}"


class _Reader:
    """Checks fields into Rows, remembering the ids seen (case-insensitively: a file on macOS or Windows)."""

    def __init__(self, check_voice, check_audio=None):
        self.check_voice = check_voice  # name -> what load_voice gets, or raises ValueError/OSError
        self.check_audio = check_audio  # a training manifest's clip -> the file to read, or raises ValueError
        self.columns = COLUMNS if check_audio is None else TRAINING_COLUMNS
        self.voices = {}  # voice name -> its ref, or the RowError it gave (each voice checked once)
        self.seen = {}  # id.casefold() -> (line, id)

    def voice(self, name):
        if name not in self.voices:
            try:
                self.voices[name] = name if self.check_voice is None else self.check_voice(name)
            except (ValueError, OSError) as e:
                self.voices[name] = RowError(str(e))
        if isinstance(self.voices[name], RowError):
            raise self.voices[name]
        return self.voices[name]

    def claim(self, line, value):
        """The checked id, registered so that a later row with the same id is refused."""
        id_ = check_id(value)
        first = self.seen.setdefault(id_.casefold(), (line, id_))
        if first[0] != line:
            same = "" if first[1] == id_ else f" (as {first[1]!r}: ids that differ only in case name one file)"
            raise RowError(f"duplicate id {id_!r}, first on line {first[0]}{same}")
        return id_

    def row(self, line, fields):
        """A dict of column -> JSON value or CSV cell (None or "" for not given) -> Row."""
        unknown = [c for c in fields if c not in self.columns]
        if unknown:
            raise RowError(_unknown(unknown, self.columns))
        given = {c: v for c, v in fields.items() if v is not None and v != ""}
        if "id" not in given:
            raise RowError("no id; every row needs a unique id, the name of its audio file")
        id_ = self.claim(line, given["id"])
        if "text" not in given:
            raise RowError("no text")
        if self.check_audio is not None:
            return self.clip(line, id_, given)
        voice = given.get("voice")
        if voice is not None and not isinstance(voice, str):
            raise RowError(f"voice must be a preset name or a .npz file, got {voice!r}")
        seed = None
        if "seed" in given:
            seed = _cell("seed", given["seed"], int, check_seed)
        settings = {c: _cell(c, given[c], *SETTINGS[c]) for c in SETTINGS if c in given}
        silence = _cell("silence", given["silence"], float, check_silence) if "silence" in given else None
        return Row(
            line=line,
            id=id_,
            text=check_text(given["text"]),
            voice=voice,
            voice_ref=None if voice is None else self.voice(voice),
            seed=seed,
            long=_boolean(given["long"]) if "long" in given else False,
            settings=settings,
            silence=silence,
        )

    def clip(self, line, id_, given):
        """A training manifest's row: its id, text and clip."""
        audio = given.get("audio")
        if not isinstance(audio, str):
            raise RowError("no audio; every row names its clip (a path from the manifest's folder)")
        try:
            ref = self.check_audio(audio)
        except ValueError as e:
            raise RowError(str(e)) from None
        return Row(line, id_, check_text(given["text"]), None, None, None, False, {}, audio=audio, audio_ref=ref)


def _lines(data):
    """(line number, line) of each non-blank line; only "\\n" ends a line (JSON may hold U+2028 and friends)."""
    for n, line in enumerate(data.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            yield n, line


def _jsonl(data):
    for n, line in _lines(data):
        try:
            fields = json.loads(line)
        except ValueError as e:
            yield n, None, RowError(f"not JSON ({e}); a JSON Lines file has one object per line")
            continue
        if not isinstance(fields, dict):
            yield (n, None, RowError(f'a JSON {type(fields).__name__}, not an object like {{"id": ..., "text": ...}}'))
            continue
        yield n, fields, None


def _text(data):
    for n, line in _lines(data):
        yield n, {"id": f"line-{n:04d}", "text": line}, None


def _csv(data, name, delimiter, known=COLUMNS):
    rows = csv.reader(io.StringIO(data, newline=""), delimiter=delimiter)
    try:
        header = next(rows, None)
        while header is not None and not any(c.strip() for c in header):  # blank lines before the header
            header = next(rows, None)
        if header is None:
            raise ManifestError(f"{name} has no header row; its first line names the columns (id,text,...)")
        header_line = rows.line_num
        header = [c.strip() for c in header]
        unknown = [c for c in header if c not in known]
        if unknown:
            raise ManifestError(f"{name} line {header_line}: {_unknown(unknown, known)}")
        required = [c for c in TRAINING_COLUMNS if c in known]  # id and text; and audio in a training manifest
        missing = [c for c in required if c not in header]
        if missing or len(set(header)) != len(header):
            what = f"no {' and no '.join(missing)} column" if missing else "a column named twice"
            needs = ", ".join(required[:-1]) + " and " + required[-1]
            raise ManifestError(f"{name} line {header_line}: the header has {what}; it needs {needs}")
        end = rows.line_num
        for cells in rows:
            n, end = end + 1, rows.line_num  # a quoted cell may span lines: report the row's first
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                yield n, None, RowError(f"{len(cells)} cells, but the header names {len(header)} columns")
                continue
            yield n, dict(zip(header, cells)), None
    except csv.Error as e:
        raise ManifestError(f"{name} line {rows.line_num}: not valid CSV ({e})") from None


def _read(path):
    name = os.fspath(path)
    if name.lower().endswith(".json"):
        raise ManifestError(
            f"{name}: a .json file is read as one document; the manifest is JSON Lines (.jsonl), one object "
            f"per line (jq -c '.[]' {name} > corpus.jsonl converts an array)"
        )
    try:
        raw = read_bounded(path, MAX_MANIFEST_BYTES, "the manifest")
    except NotAFileError as e:
        raise ManifestError(str(e)) from None
    except OSError as e:
        raise ManifestError(f"cannot read {name}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")  # a byte order mark (spreadsheets write one) is not part of line 1
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ManifestError(f"{name} line {line} is not UTF-8 (byte {raw[e.start]:#04x}); save it as UTF-8") from None


def read_manifest(path, check_voice=None, check_audio=None):
    """-> (rows, problems), both in file order. check_voice(name) -> what load_voice gets, or raises.
    check_audio(path as written) -> the clip's file, or raises ValueError: given, a training manifest is read.

    Raises ManifestError when the file cannot be read at all: then no row can be trusted."""
    name, data = os.fspath(path), _read(path)
    ext = os.path.splitext(name)[1].lower()
    reader = _Reader(check_voice, check_audio)
    if ext in (".jsonl", ".ndjson"):
        lines = _jsonl(data)
    elif ext in (".csv", ".tsv"):
        lines = _csv(data, name, "\t" if ext == ".tsv" else ",", reader.columns)
    elif check_audio is not None:
        raise ManifestError(
            f"{name}: a training manifest is .jsonl, .csv or .tsv, with the columns {', '.join(TRAINING_COLUMNS)}"
        )
    else:
        lines = _text(data)
    rows, problems = [], []
    for n, fields, error in lines:
        try:
            if error is not None:
                raise error
            rows.append(reader.row(n, fields))
        except RowError as e:
            id_ = fields.get("id") if isinstance(fields, dict) else None
            id_ = id_ if isinstance(id_, str) else None
            problems.append(Problem(n, id_, f"{name} line {n}: {e}"))
    if not rows and not problems:
        raise ManifestError(f"{name} has no rows (it is empty, or only blank lines)")
    return rows, problems
