"""Find a model: a Hub id is downloaded (huggingface_hub's cache) and converted once into nanobark's cache.

    resolve("suno/bark-small") -> (converted directory, fetch for voice presets or None)

A local directory is used as it is when nanobark.convert wrote it, and converted into the
cache when it is a Hub-layout snapshot. The conversion is atomic (convert.atomic_folder): it is
written into a temporary directory beside the target, under a file lock, and renamed into place, so a
crash or a concurrent run never leaves a half-converted model where a finished one is expected.

Offline, nothing waits on the network: one request without retries tells whether the Hub answers
(huggingface_hub >= 1 retries a failed download for ~25 s), and when it does not, or HF_HUB_OFFLINE=1
is set, the files are taken from huggingface_hub's cache (as transformers leaves it) or not at all.
"""

import hashlib
import json
import os
import shutil

from ..voices import PresetDownloadError, VoiceFileNotFoundError
from .checkpoint import FORMAT_VERSION, HUBERT_FILE, QUANTIZER_FILE, read_meta
from .convert.cloning import convert_hubert, convert_quantizer
from .convert.folder import atomic_folder, write_converted

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
        with open(os.path.join(path, SOURCE_STAMP)) as f:
            return json.load(f)
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


def _local_target(src_dir):
    """The cache folder of a local snapshot, keyed by its path alone: a changed snapshot is reconverted there."""
    src_dir = os.path.abspath(src_dir)
    digest = hashlib.sha256(src_dir.encode()).hexdigest()[:16]
    return os.path.join(cache_root(), "local", f"{os.path.basename(src_dir)}-{digest}")


def why_offline(repo_id, filename="config.json"):
    """Why the Hub cannot be asked for files now ("HF_HUB_OFFLINE=1 is set", "... cannot be reached (...)"), or None.

    One HEAD request, without huggingface_hub's retries: an error with an HTTP status (404, 401, 5xx)
    means the Hub answered, so the download goes on and reports it; any other error (no network,
    refused, timeout, proxy) means it cannot be reached."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 is set"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None
    except Exception as e:
        return f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({type(e).__name__})"
    return None


def _absent_errors(local_only):
    """The huggingface_hub errors that mean "this file is not there" (offline: not in the cache)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # "the Hub has no such file" (not "we are offline", which must not be skipped over online)
        from huggingface_hub.errors import RemoteEntryNotFoundError as NotOnHub
    except ImportError:  # huggingface_hub < 1.0
        from huggingface_hub.errors import EntryNotFoundError as NotOnHub
    return (NotOnHub, LocalEntryNotFoundError) if local_only else (NotOnHub,)


def download(repo_id, local_only=False):
    """Download a Hub checkpoint's files (not the voice presets) -> a folder linking to them.

    The files stay in huggingface_hub's cache; the folder (in nanobark's cache) gathers them in
    one place, since the weights may come from another revision than the rest. local_only: take
    them from huggingface_hub's cache, where transformers may have left pytorch_model.bin (main)
    without the safetensors file of another revision.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RevisionNotFoundError

    def get(name, revision=None):
        return hf_hub_download(repo_id, name, revision=revision, local_files_only=local_only)

    absent = _absent_errors(local_only)
    files = {"config.json": get("config.json")}
    for name in SNAPSHOT_FILES[1:]:
        try:
            files[name] = get(name)
        except absent:  # e.g. a snapshot without tokenizer.json
            pass
    try:
        files["model.safetensors"] = get("model.safetensors", SAFETENSORS_REVISIONS.get(repo_id))
    except (*absent, RevisionNotFoundError):
        files["pytorch_model.bin"] = get("pytorch_model.bin")
    folder = os.path.join(cache_root(), "downloads", repo_id.replace("/", "--"))
    os.makedirs(folder, exist_ok=True)
    for name, path in files.items():
        link = os.path.join(folder, name)
        if os.path.lexists(link):
            os.remove(link)
        try:
            os.symlink(os.path.realpath(path), link)
        except OSError:  # no symlinks (e.g. Windows without developer mode)
            shutil.copyfile(path, link)
    return folder


def hub_fetch(repo_id):
    """fetch(relative_path) -> local path of one file (a voice preset): huggingface_hub's cache, else downloaded.

    A cached file is used without asking the network; one that is not, while offline, is a
    PresetDownloadError at once (PresetIndex.load adds the voice's name and what to do)."""

    def fetch(rel):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:  # the presets on the Hub do not change: a cached copy (ours or transformers') is the file
            return hf_hub_download(repo_id, rel, local_files_only=True)
        except LocalEntryNotFoundError:
            pass
        offline = why_offline(repo_id, rel)
        if offline:
            raise PresetDownloadError(f"{offline} and huggingface_hub's cache does not hold {rel}")
        try:
            return hf_hub_download(repo_id, rel)
        except _absent_errors(False):
            raise VoiceFileNotFoundError(f"{rel} is not in {repo_id} on the Hugging Face Hub") from None
        except Exception as e:  # the network went away mid-way, or the Hub is down
            raise PresetDownloadError(
                f"downloading {rel} from {repo_id} failed ({type(e).__name__})"
            ) from None

    return fetch


def _cannot_download(repo_id, target, offline, error):
    """The ConnectionError message for a Hub id that neither cache holds: why, and the ways out."""
    from huggingface_hub import constants

    why = offline or f"the download failed ({type(error).__name__})"
    older = " (the copy there is of an older format)" if read_meta(target) is not None else ""
    return (
        f"cannot get {repo_id}: {why}, and neither huggingface_hub's cache ({constants.HF_HUB_CACHE}) nor "
        f"nanobark's ({target}{older}) holds it. Connect to the internet once: the model is downloaded and "
        "converted once, and each voice preset is downloaded on first use. Or download a snapshot of "
        f"{repo_id} (config.json, pytorch_model.bin or model.safetensors, vocab.txt, "
        "speaker_embeddings_path.json and speaker_embeddings/) into a folder and pass it: --model FOLDER, or "
        "Bark.from_pretrained(FOLDER). With HF_HUB_OFFLINE=1 the network is never asked and a copy in "
        "huggingface_hub's cache (e.g. left by transformers) is used as it is."
    )


def looks_like_hub_id(name):
    """One of HUB_MODELS, or "owner/name" (not a path such as ./x, /x, ~/x or a/b/c)."""
    return name in HUB_MODELS or not (name.startswith((os.sep, ".", "~")) or name.count("/") != 1)


def resolve(name_or_path):
    """A Hub id, a Hub-layout snapshot folder or a converted folder -> (converted folder, preset fetch or None)."""
    if os.path.isdir(name_or_path):
        if read_meta(name_or_path) is not None:
            return name_or_path, None
        return convert_once(name_or_path, _local_target(name_or_path), source_stamp(name_or_path)), None
    if not looks_like_hub_id(name_or_path):
        raise FileNotFoundError(
            f"model {name_or_path!r} is neither a folder nor a Hub id; "
            f"use one of {', '.join(HUB_MODELS)} or an existing local folder"
        )
    target = os.path.join(cache_root(), name_or_path.replace("/", "--"))
    if not is_current(target):
        offline = why_offline(name_or_path)
        try:
            snapshot = download(name_or_path, local_only=offline is not None)
        except Exception as e:
            if type(e).__name__ in ("RepositoryNotFoundError", "GatedRepoError", "RemoteEntryNotFoundError"):
                raise FileNotFoundError(
                    f"{name_or_path} is not a Bark checkpoint on the Hugging Face Hub "
                    f"({type(e).__name__}); use {' or '.join(HUB_MODELS)}"
                ) from None
            raise ConnectionError(_cannot_download(name_or_path, target, offline, e)) from None
        convert_once(snapshot, target)
        shutil.rmtree(snapshot, ignore_errors=True)  # only links: the files stay in huggingface_hub's cache
    return target, hub_fetch(name_or_path)


# ---------------------------------------------------------------- voice cloning's weights


def cloning_weights(quantizer=None, hubert=None):
    """-> (folder holding hubert.safetensors, folder holding quantizer.safetensors), converted once into the cache.

    hubert: None (facebook/hubert-base-ls960 from the Hub), a local snapshot folder or checkpoint file (either
    layout), or a folder holding hubert.safetensors. quantizer: None (QUANTIZER_DEFAULT), another file of
    QUANTIZER_REPO (e.g. "quantifier_V1_hubert_base_ls960_23.pth"), a local quantizer file, or a folder
    holding quantizer.safetensors."""
    hubert_dir = _cloning_part(hubert, HUBERT_FILE, convert_hubert, HUBERT_REPO, "pytorch_model.bin")
    quantizer_dir = _cloning_part(
        quantizer, QUANTIZER_FILE, convert_quantizer, QUANTIZER_REPO, QUANTIZER_DEFAULT
    )
    return hubert_dir, quantizer_dir


def _cloning_part(src, name, convert, repo_id, hub_file):
    """One of cloning_weights' two folders: given, converted from a local file, or downloaded and converted."""
    if src is not None and os.path.isfile(os.path.join(src, name)):
        return src  # converted already
    folder = os.path.join(cache_root(), "cloning")
    if src is not None and os.path.exists(
        src
    ):  # a local source: keyed by its path, reconverted if it changes
        src = os.path.abspath(src)
        target = os.path.join(
            folder, f"{os.path.basename(src)}-{hashlib.sha256(src.encode()).hexdigest()[:16]}"
        )
        stamp = [os.path.getsize(src), os.stat(src).st_mtime_ns] if os.path.isfile(src) else source_stamp(src)
        return _convert_part(src, target, name, convert, stamp)
    hub_file = src or hub_file
    if "/" in hub_file or not hub_file.endswith((".pth", ".pt", ".bin", ".safetensors")):
        raise FileNotFoundError(f"{hub_file} is neither a local file or folder nor a file of {repo_id}")
    target = os.path.join(folder, f"{repo_id.replace('/', '--')}--{hub_file}")
    if os.path.isfile(os.path.join(target, name)):
        return target
    from huggingface_hub import hf_hub_download

    offline = why_offline(repo_id, hub_file)
    try:
        path = hf_hub_download(repo_id, hub_file, local_files_only=offline is not None)
    except _absent_errors(offline is not None) as e:
        if offline:
            raise ConnectionError(
                f"voice cloning needs {repo_id}/{hub_file}, downloaded once on first use, but {offline}, and "
                "huggingface_hub's cache does not hold it; connect once, or pass a downloaded copy "
                "(clone_voice(..., quantizer=PATH, hubert=PATH); on the command line `nanobark clone RECORDING "
                "--quantizer PATH --hubert PATH --out VOICE.npz`, then --voice VOICE.npz)"
            ) from None
        raise FileNotFoundError(
            f"{hub_file} is not in {repo_id} on the Hugging Face Hub ({type(e).__name__})"
        ) from None
    return _convert_part(path, target, name, convert)


def _convert_part(src, target, name, convert, stamp=None):
    return convert_once(src, target, stamp, convert, lambda path: os.path.isfile(os.path.join(path, name)))
