"""Find a model: a Hub id is downloaded (huggingface_hub's cache) and converted once into nanobark's cache.

    resolve("suno/bark-small") -> (converted directory, fetch for voice presets or None)

A local directory is used as it is when nanobark.convert wrote it, and converted into the
cache when it is a Hub-layout snapshot. The conversion is atomic (files.folder_atomic): it is
written into a locked temporary directory beside the target and renamed into place, so a crash
or a concurrent run never leaves a half-converted model where a finished one is expected.
"""

import hashlib
import os
import shutil

from .checkpoint import is_converted, is_current
from .convert.folder import write_converted
from .files import folder_atomic

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


def cache_root():
    """$NANOBARK_CACHE, else $XDG_CACHE_HOME/nanobark, else ~/.cache/nanobark (an empty variable counts as unset)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.environ.get("NANOBARK_CACHE") or os.path.join(xdg, "nanobark")


def convert_once(src_dir, target):
    """Convert src_dir into target unless a finished conversion is already there; returns target."""
    if not is_current(target):  # missing, unfinished, or converted by another nanobark: (re)convert
        with folder_atomic(target, is_current) as tmp:
            write_converted(src_dir, tmp)
    return target


def _local_target(src_dir):
    """A cache folder keyed by the snapshot's path and its weights file's size and time."""
    src_dir = os.path.abspath(src_dir)
    stamp = [src_dir]
    for f in ("model.safetensors", "pytorch_model.bin"):
        p = os.path.join(src_dir, f)
        if os.path.exists(p):
            st = os.stat(p)
            stamp += [f, str(st.st_size), str(st.st_mtime_ns)]
    digest = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:16]
    return os.path.join(cache_root(), "local", f"{os.path.basename(src_dir)}-{digest}")


def download(repo_id):
    """Download a Hub checkpoint's files (not the voice presets) -> a folder linking to them.

    The files stay in huggingface_hub's cache; the folder (in nanobark's cache) gathers them in
    one place, since the weights may come from another revision than the rest.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RevisionNotFoundError

    try:  # "the Hub has no such file" (not "we are offline", which must not be skipped over)
        from huggingface_hub.errors import RemoteEntryNotFoundError as NotOnHub
    except ImportError:  # huggingface_hub < 1.0
        from huggingface_hub.errors import EntryNotFoundError as NotOnHub
    files = {"config.json": hf_hub_download(repo_id, "config.json")}  # first: fails fast when offline
    for name in SNAPSHOT_FILES[1:]:
        try:
            files[name] = hf_hub_download(repo_id, name)
        except NotOnHub:  # e.g. a snapshot without tokenizer.json
            pass
    try:
        revision = SAFETENSORS_REVISIONS.get(repo_id)
        files["model.safetensors"] = hf_hub_download(repo_id, "model.safetensors", revision=revision)
    except (NotOnHub, RevisionNotFoundError):
        files["pytorch_model.bin"] = hf_hub_download(repo_id, "pytorch_model.bin")
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
    """fetch(relative_path) -> local path, downloading one file (a voice preset) on first use."""

    def fetch(rel):
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, rel)

    return fetch


def resolve(name_or_path):
    """A Hub id, a Hub-layout snapshot folder or a converted folder -> (converted folder, preset fetch or None)."""
    if os.path.isdir(name_or_path):
        if is_converted(name_or_path):
            return name_or_path, None
        return convert_once(name_or_path, _local_target(name_or_path)), None
    looks_like_path = name_or_path.startswith((os.sep, ".", "~")) or name_or_path.count("/") != 1
    if name_or_path not in HUB_MODELS and looks_like_path:
        raise FileNotFoundError(
            f"model {name_or_path!r} is neither a folder nor a Hub id; "
            f"use one of {', '.join(HUB_MODELS)} or an existing local folder"
        )
    target = os.path.join(cache_root(), name_or_path.replace("/", "--"))
    if not is_current(target):
        try:
            snapshot = download(name_or_path)
        except Exception as e:
            if type(e).__name__ in ("RepositoryNotFoundError", "GatedRepoError", "RemoteEntryNotFoundError"):
                raise FileNotFoundError(
                    f"{name_or_path} is not a Bark checkpoint on the Hugging Face Hub "
                    f"({type(e).__name__}); use {' or '.join(HUB_MODELS)}"
                ) from None
            cached = f"no copy is cached at {target}"
            if is_converted(target):  # converted by an older nanobark: it cannot be used as it is
                cached = f"the copy cached at {target} is of an older format"
            raise ConnectionError(
                f"could not download {name_or_path} from the Hugging Face Hub ({type(e).__name__}), and {cached}. "
                "Either connect to the internet once, or download the snapshot yourself (config.json, "
                "pytorch_model.bin or model.safetensors, vocab.txt, speaker_embeddings_path.json and "
                "speaker_embeddings/) into a folder and pass that folder, "
                f"or run: python -m nanobark.convert SNAPSHOT {target}"
            ) from None
        convert_once(snapshot, target)
        shutil.rmtree(snapshot, ignore_errors=True)  # only links: the files stay in huggingface_hub's cache
    return target, hub_fetch(name_or_path)
