"""Find a model: a Hub id is downloaded (huggingface_hub's cache) and converted once into nanobark's cache.

    resolve("suno/bark-small") -> (converted directory, fetch for voice presets or None)

A local directory is used as it is when nanobark.convert wrote it, and converted into the
cache when it is a Hub-layout snapshot. The conversion is atomic (convert.atomic_folder): it is
written into a temporary directory beside the target, under a file lock, and renamed into place, so a
crash or a concurrent run never leaves a half-converted model where a finished one is expected.

Every Hub file goes through fetch_file: one in huggingface_hub's cache (as transformers leaves it, too) is
used without asking the network. For one that is not, one request without retries tells whether the Hub
answers (huggingface_hub >= 1 retries a failed download for ~25 s): offline, or with HF_HUB_OFFLINE=1, it
fails at once.
"""

import hashlib
import json
import os
import time

from ..files import read_json
from ..voices import PresetDownloadError, VoiceFileNotFoundError
from .checkpoint import FORMAT_VERSION, HUBERT_FILE, QUANTIZER_FILE, read_meta
from .convert.folder import atomic_folder, write_converted
from .convert.hubert import convert_hubert, convert_quantizer

HUB_MODELS = ("suno/bark-small", "suno/bark")
# bark-small's safetensors file sits on an unmerged PR branch; the main branches only have pytorch_model.bin
SAFETENSORS_REVISIONS = {"suno/bark-small": "refs/pr/5"}
SNAPSHOT_FILES = (
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "speaker_embeddings_path.json",
)
# voice cloning's two other models: HuBERT base (Apache-2.0) and the community's semantic quantizer (MIT)
HUBERT_REPO = "facebook/hubert-base-ls960"  # pytorch_model.bin on main (378 MB)
QUANTIZER_REPO = "GitMylo/bark-voice-cloning"
QUANTIZER_DEFAULT = "quantifier_hubert_base_ls960_14.pth"  # version 0, 14 epochs, English: gitmylo's default
SOURCE_STAMP = "source.json"  # in a conversion of a local folder: the files it was converted from


def cache_root():
    """$NANOBARK_CACHE, else $XDG_CACHE_HOME/nanobark, else ~/.cache/nanobark (an empty variable counts as unset)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.environ.get("NANOBARK_CACHE") or os.path.join(xdg, "nanobark")


def _stamp_of(path):
    """The source stamp a conversion at `path` was made from, or None."""
    try:
        return read_json(os.path.join(path, SOURCE_STAMP), "the source stamp")
    except (OSError, ValueError):
        return None


def is_current(path):
    """A finished conversion that this nanobark reads and that has all it writes: a copy in the cache converted
    before the EnCodec encoder was kept (no "encoder" entry) is converted again, once, for cloning."""
    meta = read_meta(path) or {}
    return meta.get("format_version", 1) == FORMAT_VERSION and "encoder" in meta


def convert_once(src, target, stamp=None, write=write_converted, finished=is_current):
    """Convert `src` into `target` with write(src, folder) unless a finished conversion (of the source `stamp`
    describes, if given) is there. Another one is replaced in place, whole (convert.atomic_folder)."""

    def up_to_date(path):  # missing, unfinished, of another format or another source: (re)convert
        return finished(path) and (stamp is None or _stamp_of(path) == stamp)

    def fill(tmp):
        write(src, tmp)
        if stamp is not None:
            with open(os.path.join(tmp, SOURCE_STAMP), "w") as f:
                json.dump(stamp, f)

    if not up_to_date(target):  # checked again under the lock: another process may be converting it now
        atomic_folder(target, fill, keep=up_to_date)
    return target


def _read_by_converter(name):
    """Top-level files the converter may read: config and tokenizer files, weights of either layout."""
    return name in SNAPSHOT_FILES or name.endswith((".safetensors", ".bin", ".pt", ".th"))


def source_stamp(src_dir):
    """{file: [size, mtime_ns]} of what the converter reads in src_dir: a change (even a touch) means reconvert."""
    stamp = {}
    for entry in os.scandir(src_dir):
        if _read_by_converter(entry.name) and entry.is_file():
            st = entry.stat()  # follows links (a Hub cache snapshot links to its blobs)
            stamp[entry.name] = [st.st_size, st.st_mtime_ns]
    return stamp


def _path_key(folder, path):
    """The cache folder in `folder` of a local source, keyed by its path alone: a changed source is converted
    again there, not beside."""
    path = os.path.abspath(path)
    return os.path.join(folder, f"{os.path.basename(path)}-{hashlib.sha256(path.encode()).hexdigest()[:16]}")


class HubOffline(ConnectionError):
    """A file that huggingface_hub's cache does not hold, while the Hub cannot be asked."""


# (when, why) the Hub last failed to answer: it is not asked again for a minute
_unreachable = (float("-inf"), None)


def why_offline(repo_id, filename="config.json"):
    """Why the Hub cannot be asked for files now ("HF_HUB_OFFLINE=1 is set", "... cannot be reached (...)"), or None.

    One HEAD request, without huggingface_hub's retries: an error with an HTTP status (404, 401, 5xx)
    means the Hub answered, so the download goes on and reports it; any other error (no network,
    refused, timeout, proxy) means it cannot be reached."""
    global _unreachable
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 is set"
    if time.monotonic() - _unreachable[0] < 60:
        return _unreachable[1]
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None
    except Exception as e:
        why = f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({type(e).__name__})"
        _unreachable = (time.monotonic(), why)
        return why
    return None


def fetch_file(repo_id, filename, revision=None):
    """The local path of one file of a Hub repo: huggingface_hub's cache (transformers' too), else downloaded.

    A cached file is used without asking the network (the files of a revision do not change). One that is not
    cached is a HubOffline error at once while the Hub cannot be asked (why_offline); a file, revision or repo
    the Hub does not have is a FileNotFoundError, and any other failure a ConnectionError."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:  # "the Hub has no such file" (huggingface_hub < 1.0 names it EntryNotFoundError)
        from huggingface_hub.errors import RemoteEntryNotFoundError as NotOnHub
    except ImportError:
        from huggingface_hub.errors import EntryNotFoundError as NotOnHub
    try:
        try:
            return hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
        except LocalEntryNotFoundError:
            offline = why_offline(repo_id, filename)
        if not offline:
            return hf_hub_download(repo_id, filename, revision=revision)
    except (NotOnHub, RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise FileNotFoundError(f"{repo_id} on the Hub has no {filename} ({type(e).__name__})") from None
    except Exception as e:  # the network went away mid-way, or the Hub is down
        raise ConnectionError(f"downloading {filename} from {repo_id} failed ({type(e).__name__})") from None
    raise HubOffline(f"{offline}, and huggingface_hub's cache does not hold {repo_id}/{filename}")


def download(repo_id):
    """A Hub checkpoint's files (not the voice presets: fetched on use) -> {name: path in huggingface_hub's cache}.

    The weights may come from another revision than the rest (SAFETENSORS_REVISIONS); offline, transformers
    may have cached pytorch_model.bin (main) without the safetensors file."""
    files = {"config.json": fetch_file(repo_id, "config.json")}
    for name in SNAPSHOT_FILES[1:]:
        try:
            files[name] = fetch_file(repo_id, name)
        except (FileNotFoundError, HubOffline):  # e.g. a snapshot without tokenizer.json
            pass
    try:
        revision = SAFETENSORS_REVISIONS.get(repo_id)
        files["model.safetensors"] = fetch_file(repo_id, "model.safetensors", revision)
    except (FileNotFoundError, HubOffline):
        files["pytorch_model.bin"] = fetch_file(repo_id, "pytorch_model.bin")
    return files


def hub_fetch(repo_id):
    """fetch(relative_path) -> local path of one file (a voice preset), by fetch_file; its errors as the voices'
    (PresetIndex.load adds the voice's name and what to do)."""

    def fetch(rel):
        try:
            return fetch_file(repo_id, rel)
        except FileNotFoundError as e:
            raise VoiceFileNotFoundError(str(e)) from None
        except ConnectionError as e:
            raise PresetDownloadError(str(e)) from None

    return fetch


def looks_like_hub_id(name):
    """One of HUB_MODELS, or "owner/name" (not a path such as ./x, /x, ~/x or a/b/c)."""
    return name in HUB_MODELS or not (name.startswith((os.sep, ".", "~")) or name.count("/") != 1)


def resolve(name_or_path):
    """A Hub id, a Hub-layout snapshot folder or a converted folder -> (converted folder, preset fetch or None)."""
    if os.path.isdir(name_or_path):
        if read_meta(name_or_path) is not None:
            return name_or_path, None
        target = _path_key(os.path.join(cache_root(), "local"), name_or_path)
        return convert_once(name_or_path, target, source_stamp(name_or_path)), None
    if not looks_like_hub_id(name_or_path):
        raise FileNotFoundError(
            f"model {name_or_path!r} is neither a folder nor a Hub id; "
            f"use one of {', '.join(HUB_MODELS)} or an existing local folder"
        )
    target = os.path.join(cache_root(), name_or_path.replace("/", "--"))
    if not is_current(target):
        try:
            files = download(name_or_path)
        except FileNotFoundError as e:
            use = " or ".join(HUB_MODELS)
            raise FileNotFoundError(f"{name_or_path} is not a Bark checkpoint: {e}; use {use}") from None
        except ConnectionError as e:
            raise ConnectionError(
                f"cannot get {name_or_path}: {e}. Connect to the internet once (the model is downloaded on first "
                "use), or pass a snapshot folder you downloaded: --model FOLDER or Bark.from_pretrained(FOLDER) "
                "(README: Files, caches and offline use)."
            ) from None
        convert_once(files, target)
    return target, hub_fetch(name_or_path)


# ---------------------------------------------------------------- voice cloning's weights


def cloning_weights(quantizer=None, hubert=None):
    """-> (folder holding hubert.safetensors, folder holding quantizer.safetensors), converted once into the cache.

    hubert: None (facebook/hubert-base-ls960 from the Hub), a local snapshot folder or checkpoint file (either
    layout), or a folder holding hubert.safetensors. quantizer: None (QUANTIZER_DEFAULT), another file of
    QUANTIZER_REPO (e.g. "quantifier_V1_hubert_base_ls960_23.pth"), a local quantizer file, or a folder
    holding quantizer.safetensors."""
    hubert_dir = _cloning_part(hubert, HUBERT_FILE, convert_hubert, HUBERT_REPO, "pytorch_model.bin")
    quantizer_dir = _cloning_part(quantizer, QUANTIZER_FILE, convert_quantizer, QUANTIZER_REPO, QUANTIZER_DEFAULT)
    return hubert_dir, quantizer_dir


def _cloning_part(src, name, convert, repo_id, hub_file):
    """One of cloning_weights' two folders: given, converted from a local file, or downloaded and converted."""
    if src is not None and os.path.isfile(os.path.join(src, name)):
        return src  # converted already
    folder = os.path.join(cache_root(), "cloning")
    if src is not None and os.path.exists(src):  # a local source: reconverted in place if it changes
        stamp = [os.path.getsize(src), os.stat(src).st_mtime_ns] if os.path.isfile(src) else source_stamp(src)
        return _convert_part(os.path.abspath(src), _path_key(folder, src), name, convert, stamp)
    hub_file = src or hub_file
    if "/" in hub_file or not hub_file.endswith((".pth", ".pt", ".bin", ".safetensors")):
        raise FileNotFoundError(f"{hub_file} is neither a local file or folder nor a file of {repo_id}")
    target = os.path.join(folder, f"{repo_id.replace('/', '--')}--{hub_file}")
    if os.path.isfile(os.path.join(target, name)):
        return target
    try:
        path = fetch_file(repo_id, hub_file)
    except HubOffline as e:
        raise HubOffline(
            f"voice cloning downloads its weights on first use: {e}. Connect once, or pass a downloaded "
            "copy: clone_voice(..., quantizer=PATH, hubert=PATH), or --quantizer PATH --hubert PATH."
        ) from None
    return _convert_part(path, target, name, convert)


def _convert_part(src, target, name, convert, stamp=None):
    return convert_once(src, target, stamp, convert, lambda path: os.path.isfile(os.path.join(path, name)))
