"""Voice prompts: a semantic history plus the coarse and fine codes of the same audio.

A voice is three integer arrays: `semantic_prompt` (S,), `coarse_prompt` (2, T) and `fine_prompt` (8, T).
They come as a dict, as one Suno `.npz`, or by preset name from a `PresetIndex` (the Hub's
`speaker_embeddings/*.npy` files or a folder of Suno `.npz` files). Everything is checked on the way in,
so a bad voice fails here with its name instead of deep inside generation. Pickles are never loaded.
"""

import difflib
import math
import os
import tokenize
import zipfile
from collections.abc import Mapping

import numpy as np

from .files import read_json, write_atomic
from .layout import CODEBOOK_SIZE, N_COARSE, N_FINE, SEMANTIC_VOCAB_SIZE, check_ids

KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
# Suno's languages and presets, as on the Hub (suno/bark-small, suno/bark) and in the original's ALLOWED_PROMPTS
LANGUAGES = {
    "en": "English",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "tr": "Turkish",
    "zh": "Chinese",
}
SUNO_PRESETS = ("announcer",) + tuple(
    f"{generation}{code}_speaker_{n}" for generation in ("", "v2/") for code in LANGUAGES for n in range(10)
)
AUDIO_FILES = (".wav", ".flac", ".ogg", ".mp3")  # a voice named like this is a recording, to clone


class VoiceError(ValueError):
    """A voice prompt that cannot be used."""


class VoiceFileNotFoundError(FileNotFoundError):
    """A voice file that is not where it was looked for."""


class PresetDownloadError(ConnectionError):
    """A preset that is not on this machine and cannot be downloaded now (offline, or the Hub unreachable).

    A ConnectionError, not a VoiceError: the voice is fine, the network is not; the same call works
    once connected, and code that retries on network errors should retry this too."""


def validate_voice(prompt, name="voice") -> dict:
    """Check a voice and return fresh int64 copies of its three arrays."""
    if not hasattr(prompt, "keys"):
        raise VoiceError(f"{name}: a voice is a dict with keys {', '.join(KEYS)}, got {type(prompt).__name__}")
    missing = [k for k in KEYS if k not in prompt.keys()]
    extra = [k for k in prompt.keys() if k not in KEYS]
    if missing or extra:
        what = "; ".join(filter(None, [missing and f"missing {missing}", extra and f"unexpected {extra}"]))
        raise VoiceError(f"{name}: {what}; a voice has exactly the keys {', '.join(KEYS)}")
    semantic = check_ids(prompt["semantic_prompt"], f"{name}: semantic_prompt", SEMANTIC_VOCAB_SIZE, error=VoiceError)
    coarse = check_ids(
        prompt["coarse_prompt"], f"{name}: coarse_prompt", CODEBOOK_SIZE, rows=N_COARSE, error=VoiceError
    )
    fine = check_ids(prompt["fine_prompt"], f"{name}: fine_prompt", CODEBOOK_SIZE, rows=N_FINE, error=VoiceError)
    if coarse.shape[1] != fine.shape[1]:
        raise VoiceError(
            f"{name}: coarse_prompt has {coarse.shape[1]} frames but fine_prompt {fine.shape[1]}; "
            "they must be the same audio"
        )
    # the coarse stage asserts this (75 Hz codec frames vs 49.9 Hz semantic tokens); all 271 Suno presets pass
    if round(coarse.shape[1] / len(semantic), 1) != 1.5:
        raise VoiceError(
            f"{name}: {coarse.shape[1]} coarse frames for {len(semantic)} semantic tokens, ratio "
            f"{coarse.shape[1] / len(semantic):.3f}; Bark needs about 1.5 (75 Hz codes / 49.9 Hz tokens)"
        )
    return {"semantic_prompt": semantic, "coarse_prompt": coarse, "fine_prompt": fine}


def _check_header(f, size, path):
    """Refuse a .npy header (of an array stored in `size` bytes) that declares more data than it holds:
    numpy allocates the declared shape before reading, so a few-KB file could ask for terabytes."""
    if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
        return  # not an array: np.load says what it is
    version = tuple(f.read(2))
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, _, dtype = read(f)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError) as e:
        raise VoiceError(f"{path} has an array header that cannot be parsed ({e}); make the voice file again") from None
    if math.prod(shape) * dtype.itemsize > size - f.tell():
        raise VoiceError(
            f"{path} has an array header declaring shape {shape} of {dtype}, more than the file holds; "
            "make the voice file again"
        )


def _check_headers(path):
    """Check the header of the .npy file, or of every member of the .npz, before numpy reads any."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as f:
                    _check_header(f, info.file_size, path)
    else:
        with open(path, "rb") as f:
            _check_header(f, os.fstat(f.fileno()).st_size, path)


def _np_load(path):
    """np.load with pickles refused: a .npz gives a dict of arrays, a .npy one array."""
    if not os.path.isfile(path):
        raise VoiceFileNotFoundError(f"voice file {path} not found; check the path or the preset name")
    try:
        _check_headers(path)
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {k: data[k] for k in data.files}
        return data
    except VoiceError:
        raise
    except ValueError:  # numpy's refusal of a pickle or an object array: never retry with pickles on
        raise VoiceError(
            f"{path} holds pickled data or is not a numpy file; a voice file holds plain integer "
            "arrays, and pickles are never loaded (they can run code)"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise VoiceError(f"{path} is not a readable numpy .npz/.npy file ({e})") from None


def voice_file_name(path):
    """The name save_voice gives a voice file: `path`, with ".npz" appended unless it ends so (any case)."""
    path = os.fspath(path)
    return path if path.lower().endswith(".npz") else path + ".npz"


def is_voice_file(voice):
    """A path (os.PathLike, or a str ending in .npz, any case) rather than a preset name."""
    return isinstance(voice, os.PathLike) or (isinstance(voice, str) and voice.lower().endswith(".npz"))


def find_voice_file(voice):
    """The voice file `voice` names, or None (a preset name, or nothing there): a path ending in .npz (any case)
    or an existing file as it is, else an existing `voice + ".npz"` (any case), as save_voice names files."""
    if is_voice_file(voice) or (isinstance(voice, str) and os.path.isfile(voice)):
        return os.fspath(voice)
    if not isinstance(voice, str) or not voice:
        return None
    folder, base = os.path.split(voice)
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        return None
    found = [n for n in names if n.startswith(base) and n[len(base) :].lower() == ".npz"]
    return os.path.join(folder, found[0]) if found else None


def close_names(name, names):
    """What to say of an unknown `name`: "close names: ..." of `names`, else a few of them as examples."""
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f"close names: {', '.join(close)}" if close else f"e.g. {', '.join(sorted(names)[:5])}"


def by_language(names):
    """Preset names -> {language code: names, v2/ first}, in LANGUAGES' order; "other" last for the rest."""
    groups = {}
    for name in names:
        code = name.rsplit("/", 1)[-1].split("_")[0]
        groups.setdefault(code if code in LANGUAGES else "other", []).append(name)
    order = [c for c in LANGUAGES if c in groups] + (["other"] if "other" in groups else [])
    return {c: sorted(groups[c], key=lambda n: (not n.startswith("v2/"), n)) for c in order}


def _unknown_preset(name, names):
    hint = close_names(name, names)
    return f"unknown voice preset {name!r}; {hint} (`nanobark voices` lists them all, or PresetIndex.names())"


def find_voice(voice, names, folder=""):
    """The look-up order of a voice named by a string -> ("preset", name), ("recording", path) or ("file", path).

    A preset (of names(), read on demand) wins over a file of the same name; a name ending in an audio suffix
    is a recording to clone; else a voice file, relative to `folder` (".npz" may be left out). A damaged preset
    index (names() raising VoiceError) matters only when the voice is not a file. Else one VoiceError."""
    try:
        presets, broken = names(), None
    except VoiceError as e:
        presets, broken = [], e
    if voice.replace("\\", "/") in presets:
        return "preset", voice
    path = os.path.join(folder, voice)
    if voice.lower().endswith(AUDIO_FILES):
        return "recording", path
    found = find_voice_file(path)
    if found is not None:
        return "file", found
    if broken:
        raise broken
    if not presets:
        raise VoiceError(
            f"voice {voice!r}: there is no voice file {path}, and the model has no voice presets; "
            "a voice file is a .npz (as save_voice writes it)"
        )
    raise VoiceError(f"{_unknown_preset(voice, presets)}; and there is no voice file {path}")


def load_voice(voice, presets=None):
    """None, a dict, a path to a Suno `.npz` (the extension may be left out), or a preset name looked up in
    `presets` (find_voice's order: a preset wins over a file of the same name) -> validated dict (or None)."""
    if voice is None:
        return None
    if isinstance(voice, Mapping):
        return validate_voice(voice, "voice dict")
    if is_voice_file(voice):
        return validate_voice(_np_load(os.fspath(voice)), os.fspath(voice))
    if isinstance(voice, str):
        if presets is None and find_voice_file(voice) is None:
            raise VoiceError(
                f"voice {voice!r} looks like a preset name but no presets were given; pass "
                "presets=PresetIndex.from_dir(model_dir), or a path ending in .npz"
            )
        kind, ref = find_voice(voice, presets.names if presets is not None else list)
        if kind == "recording":
            raise VoiceError(f"voice {voice!r} is a recording; make a voice of it first (Bark.clone_voice)")
        return presets.load(ref) if kind == "preset" else validate_voice(_np_load(ref), ref)
    raise VoiceError(
        f"voice must be None, a dict of {', '.join(KEYS)}, a .npz path or a preset name; got {type(voice).__name__}"
    )


def save_voice(path, semantic, coarse, fine) -> str:
    """Write a voice as a Suno-style `.npz` (".npz" is appended if missing); returns the path written."""
    path = voice_file_name(path)
    arrays = validate_voice({"semantic_prompt": semantic, "coarse_prompt": coarse, "fine_prompt": fine}, path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise VoiceFileNotFoundError(f"cannot save {path}: folder {folder} does not exist; create it first")

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def whole(tmp):
        try:
            back = _np_load(tmp)
        except VoiceError as e:
            return str(e)
        same = back.keys() == arrays.keys() and all(np.array_equal(back[k], v) for k, v in arrays.items())
        return None if same else "its arrays read back different"

    # a crash never leaves a half-written voice under the real name, nor a cut one an old voice's place
    write_atomic(path, write, check=whole)
    return path


def _safe_relpath(rel, source):
    """A path listed in the JSON must stay inside the model folder: relative, no "..", no drive, a .npy."""
    clean = rel.replace("\\", "/") if isinstance(rel, str) else ""
    if not clean.endswith(".npy") or clean.startswith("/") or ":" in clean or ".." in clean.split("/"):
        raise VoiceError(f"{source}: refusing file path {rel!r}; preset files must be relative .npy paths in the model")
    return clean


def _read_hub_index(index_file):
    """speaker_embeddings_path.json -> {name: {key: relative .npy path}}; what is wrong with it names the file."""
    try:
        table = read_json(index_file, "the preset index")
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
        raise VoiceError(f"{index_file} cannot be read as JSON ({e}); download it again with the model") from None
    if not isinstance(table, dict):
        raise VoiceError(
            f"{index_file} holds a JSON {type(table).__name__}, not an object of preset name -> files; "
            "download it again with the model"
        )
    files = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):  # "repo_or_path" is not a preset
            continue
        if set(entry) != set(KEYS):
            raise VoiceError(f"{index_file}: preset {name!r} must list exactly {', '.join(KEYS)}")
        files[name] = {k: _safe_relpath(entry[k], index_file) for k in KEYS}
    return files


class PresetIndex:
    """Preset name -> the file(s) holding it, read (or fetched) only when that preset is loaded."""

    def __init__(self, files, resolve):
        # name -> relative .npz path, or {key: relative .npy path}; or a function giving that, called on first
        # use, so a damaged index only matters to whoever asks for a voice
        self._table = files
        self._resolve = resolve  # relative path -> local path

    @property
    def _files(self):
        if callable(self._table):
            self._table = self._table()
        return self._table

    @classmethod
    def from_dir(cls, model_dir, fetch=None):
        """The Hub layout: `speaker_embeddings_path.json` naming `speaker_embeddings/<name>_<key>.npy` files.

        A file is read from `model_dir` when it is there, else `fetch(relative_path) -> local_path` is asked for it
        (so only the presets used are downloaded)."""

        def resolve(rel):
            local = os.path.join(model_dir, *rel.split("/"))
            if os.path.isfile(local) or fetch is None:
                return local
            return fetch(rel)

        index_file = resolve("speaker_embeddings_path.json")
        if not os.path.isfile(index_file):
            raise VoiceFileNotFoundError(
                f"no speaker_embeddings_path.json in {model_dir}, so no voice presets; download it with the model, "
                "pass a .npz path as the voice, or use PresetIndex.from_npz_dir(folder_of_npz)"
            )
        return cls(lambda: _read_hub_index(index_file), resolve)  # read when a preset is first asked for

    @classmethod
    def from_npz_dir(cls, folder):
        """A folder tree of Suno `.npz` presets (like bark/assets/prompts); `v2/x.npz` is named "v2/x"."""
        if not os.path.isdir(folder):
            raise VoiceFileNotFoundError(f"preset folder {folder} not found; pass a folder of .npz voice files")
        files = {}
        for root, _, names in os.walk(folder):
            for n in names:
                if n.endswith(".npz"):
                    rel = os.path.relpath(os.path.join(root, n), folder).replace(os.sep, "/")
                    files[rel[: -len(".npz")]] = rel
        if not files:
            raise VoiceFileNotFoundError(f"no .npz files under {folder}; pass a folder of Suno-style voice presets")
        return cls(files, lambda rel: os.path.join(folder, *rel.split("/")))

    def names(self) -> list:
        return sorted(self._files)

    def load(self, name) -> dict:
        """Validated arrays of preset `name` ("v2/en_speaker_6", "v2\\en_speaker_6", "en_speaker_6", "announcer")."""
        if not isinstance(name, str):
            raise VoiceError(f"a preset name is a str, got {type(name).__name__}")
        key = name.replace("\\", "/")
        if key not in self._files:
            raise VoiceError(_unknown_preset(name, self.names()))
        entry = self._files[key]
        if isinstance(entry, str):
            return validate_voice(_np_load(self._local(key, entry)), key)
        return validate_voice({k: _np_load(self._local(key, rel)) for k, rel in entry.items()}, key)

    def _local(self, key, rel):
        """The local path of one file of preset `key`; offline, the error is about the voice, not one of its files."""
        try:
            return self._resolve(rel)
        except PresetDownloadError as e:
            raise PresetDownloadError(
                f"voice preset {key!r} is not on this machine and cannot be downloaded now: {e}. Voice presets "
                "are downloaded from the Hugging Face Hub on first use; connect to the internet once, or pass a "
                ".npz voice file instead (--voice FILE.npz), or load the model from a snapshot folder that holds "
                "speaker_embeddings/"
            ) from None
