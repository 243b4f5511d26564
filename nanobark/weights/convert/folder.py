"""Convert a Bark checkpoint directory into nanobark's layout.

    nanobark.convert.convert(SRC, OUT)
    nanobark convert SRC OUT                     # the same, from the shell (or python -m nanobark.convert)

SRC is a local directory holding either
  * a Hugging Face snapshot of suno/bark-small or suno/bark (transformers layout): config.json and
    model.safetensors or pytorch_model.bin, plus the tokenizer files and speaker_embeddings/; or
  * Suno's original checkpoints text.pt/coarse.pt/fine.pt (small) or text_2.pt/coarse_2.pt/fine_2.pt
    (large), plus the EnCodec 24 kHz weights: encodec_24khz-*.th (the encodec package's file) or a
    facebook/encodec_24khz snapshot in SRC/encodec_24khz/.

OUT receives config.json and one safetensors file per stage (semantic, coarse, fine, codec), so a
stage can be loaded alone, plus the tokenizer and speaker-embedding files found in SRC. The EnCodec
encoder, which only voice cloning needs, goes to encoder.safetensors of its own (its codebooks are the
codec's; loading the generation models never reads it). config.json is written last: a directory
without it is an unfinished conversion.

Nothing is ever unpickled beyond plain tensors (torch.load with weights_only=True).
"""

import glob
import json
import os
import pickle
import re
import secrets
import shutil
import zipfile

import numpy as np
import torch
from filelock import FileLock

from ...config import BarkConfig, CodecConfig, GPTConfig
from ...files import MAX_SIDE_FILE, copy_bounded, read_json, write_atomic
from ..checkpoint import FORMAT_VERSION, CheckpointError, read_meta, read_safetensors, size_problems
from .codec_keys import codec_from_encodec, codec_from_transformers, encoder_from_encodec, encoder_from_transformers
from .gpt_keys import HF_ARGS, SUNO_ARGS, suno_name, take_gpt, transformers_name
from .source import ConversionError, Source

STAGES = ("semantic", "coarse", "fine", "codec")
SUNO_FILES = {"small": ("text.pt", "coarse.pt", "fine.pt"), "large": ("text_2.pt", "coarse_2.pt", "fine_2.pt")}
HF_PREFIXES = {"semantic": "semantic.", "coarse": "coarse_acoustics.", "fine": "fine_acoustics."}
HF_CONFIG_KEYS = {"semantic": "semantic_config", "coarse": "coarse_acoustics_config", "fine": "fine_acoustics_config"}
EXTRA_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "speaker_embeddings_path.json",
)

# Suno's checkpoints pickle a numpy scalar (best_val_loss). These globals rebuild plain numbers,
# never code; they are the only ones allowed beyond torch's own tensor types.
_scalar = (getattr(np, "_core", None) or np.core).multiarray.scalar
_NUMPY_GLOBALS = [
    (_scalar, "numpy.core.multiarray.scalar"),
    (_scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)},
]


def _unpickler_reason(message):
    """What torch's weights_only unpickler refused, e.g. "GLOBAL posix.system" (not its advice to turn it off)."""
    found = re.search(r"GLOBAL [\w.]+", message) or re.search(r"Unsupported [^\n.]*", message)
    return found.group(0) if found else "something that is not a plain tensor"


def read_tensors(path):
    """Read a tensor file safely: safetensors (header checked first), or a torch pickle of tensors and plain data."""
    try:
        if path.endswith(".safetensors"):
            return read_safetensors(path)
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        _check_views(loaded, path)
        return loaded
    except ConversionError:
        raise
    except CheckpointError as e:
        raise ConversionError(f"{e}; delete it and download it again") from None
    except pickle.UnpicklingError as e:
        raise ConversionError(
            f"refusing to load {path}: it is a pickle that needs more than plain tensors to load, "
            f"and loading it could run code (refused: {_unpickler_reason(str(e))}). Use the official checkpoint files, "
            f"or re-save the tensors with safetensors."
        ) from None
    except Exception as e:  # truncated or corrupt files surface as many different errors
        raise ConversionError(
            f"cannot read {path}: the file is corrupt or truncated ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Delete it and download it again."
        ) from None


def _check_views(obj, path, name=""):
    """A pickled tensor may be a view (size, stride) of far fewer stored elements: zeros(1).expand(32768, 8192)
    is a few bytes in the file and 1 GB once converted. Every tensor must hold no more elements than it stores."""
    if isinstance(obj, torch.Tensor):
        stored = obj.untyped_storage().nbytes()
        if obj.numel() * obj.element_size() > stored:
            raise ConversionError(
                f"{path}: tensor {name or '?'} of shape {tuple(obj.shape)} is a view of {stored} stored bytes (an "
                "expanded tensor) that conversion would make whole; use the official checkpoint files"
            )
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_views(v, path, f"{name}.{k}" if name else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_views(v, path, f"{name}[{i}]")


def _gpt_config(d, fine):
    """A GPTConfig from a transformers sub-config dict (missing keys take transformers' defaults)."""
    cfg = GPTConfig(**{ours: d.get(theirs, default) for ours, (theirs, default) in HF_ARGS.items()})
    if fine:
        cfg.n_codes_total, cfg.n_codes_given = d.get("n_codes_total", 8), d.get("n_codes_given", 1)
    return cfg


def _suno_config(args, fine):
    args = dict(args)
    if "input_vocab_size" not in args:  # the original's own fallback for old checkpoints
        args["input_vocab_size"] = args["output_vocab_size"] = args["vocab_size"]
    cfg = GPTConfig(**{k: args[k] for k in SUNO_ARGS})
    if fine:
        cfg.n_codes_total, cfg.n_codes_given = args.get("n_codes_total", 8), args.get("n_codes_given", 1)
    return cfg


def from_transformers(state_dict, hf_config, origin):
    """A transformers BarkModel state dict and its config.json dict -> (BarkConfig, {stage: state dict})."""
    cfg = BarkConfig(
        *(_gpt_config(hf_config.get(HF_CONFIG_KEYS[s], {}), s == "fine") for s in ("semantic", "coarse", "fine")),
        CodecConfig(),
    )
    for s in ("semantic", "coarse", "fine"):  # before a model of the config's sizes is built (expected_shapes)
        check_sizes(s, getattr(cfg, s), _hf_shapes(state_dict, HF_PREFIXES[s]), origin)
    src = Source(state_dict, origin)
    # the causal-mask buffers
    src.discard(lambda k: k.endswith(".attn.bias") and not k.startswith("codec_model."))
    states = {
        s: take_gpt(src, getattr(cfg, s), s == "fine", transformers_name, HF_PREFIXES[s])
        for s in ("semantic", "coarse", "fine")
    }
    # the encoder first: codec_from_* discards whatever of the encoder is still there
    states["encoder"] = encoder_from_transformers(src, cfg.codec, prefix="codec_model.")
    states["codec"] = codec_from_transformers(src, cfg.codec, prefix="codec_model.")
    src.finish()
    return cfg, states


# transformers' names for the blocks size_problems counts -> nanobark's
_HF_BLOCKS = (("layers.", "h."), ("position_embeds_layer.", "wpe."), ("input_embeds_layers.", "wtes."))


def _hf_shapes(state_dict, prefix):
    """{nanobark name: shape} of one stage's tensors in a transformers state dict (the names size_problems reads)."""
    shapes = {}
    for k, v in state_dict.items():
        if k.startswith(prefix) and hasattr(v, "shape"):
            name = k[len(prefix) :]
            for theirs, ours in _HF_BLOCKS:
                if name.startswith(theirs):
                    name = ours + name[len(theirs) :]
            shapes[name] = tuple(v.shape)
    return shapes


def check_sizes(stage, cfg, shapes, origin):
    """A source config asking for more than its weights hold (10^6 layers) is refused before anything is built."""
    problems = size_problems(stage, cfg, shapes)
    if problems:
        raise ConversionError(
            f"the config of {origin} does not fit its weights ({stage}: {'; '.join(problems)}); "
            "download the checkpoint again"
        )


def read_transformers(files):
    """A transformers-layout snapshot's {name: path} -> (BarkConfig, {stage: state dict})."""
    try:
        hf_config = read_json(files["config.json"], "the model's config")
    except ValueError as e:  # an OSError (missing, a device, too large) says so itself
        raise ConversionError(f"{files['config.json']} is not JSON ({e}); download it again") from None
    weights = [files[name] for name in ("model.safetensors", "pytorch_model.bin") if name in files]
    if not weights:
        raise ConversionError(
            f"{os.path.dirname(files['config.json'])} has config.json but neither model.safetensors nor "
            "pytorch_model.bin"
        )
    return from_transformers(read_tensors(weights[0]), hf_config, weights[0])


def files_of(src_dir):
    """{name: path} of what a checkpoint folder holds."""
    return {name: os.path.join(src_dir, name) for name in os.listdir(src_dir)}


def read_codec(src_dir):
    """The codec weights beside Suno's checkpoints -> (CodecConfig, codec state dict, encoder state dict)."""
    th = sorted(glob.glob(os.path.join(src_dir, "encodec_24khz*.th")))
    snap = os.path.join(src_dir, "encodec_24khz")
    cfg = CodecConfig()
    if th:
        src = Source(read_tensors(th[0]), th[0])
        encoder = encoder_from_encodec(src, cfg)  # first, as above
        state = codec_from_encodec(src, cfg)
    elif os.path.isdir(snap):
        files = [f for f in ("model.safetensors", "pytorch_model.bin") if os.path.exists(os.path.join(snap, f))]
        if not files:
            raise ConversionError(f"{snap} holds no model.safetensors or pytorch_model.bin")
        path = os.path.join(snap, files[0])
        src = Source(read_tensors(path), path)
        encoder = encoder_from_transformers(src, cfg, prefix="")
        state = codec_from_transformers(src, cfg, prefix="")
    else:
        raise ConversionError(
            f"{src_dir} has Suno's checkpoints but no EnCodec weights: put encodec_24khz-d7cc33bc.th "
            f"(from the encodec package's download) or a facebook/encodec_24khz snapshot in {snap}"
        )
    src.finish()
    return cfg, state, encoder


def read_suno(src_dir, files):
    states, cfgs = {}, {}
    for stage, name in zip(("semantic", "coarse", "fine"), files):
        path = os.path.join(src_dir, name)
        ckpt = read_tensors(path)
        if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
            raise ConversionError(
                f"{path} is not one of Suno's checkpoints (expected the keys 'model' and 'model_args')"
            )
        fine = stage == "fine"
        cfgs[stage] = _suno_config(ckpt["model_args"], fine)
        sd = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
        shapes = {k.removeprefix("transformer."): tuple(v.shape) for k, v in sd.items() if hasattr(v, "shape")}
        check_sizes(stage, cfgs[stage], shapes, path)
        src = Source(sd, path)
        src.discard(lambda k: k.endswith(".attn.bias"))  # causal-mask buffers of the non-flash path
        states[stage] = take_gpt(src, cfgs[stage], fine, suno_name)
        src.finish()
    codec_cfg, states["codec"], states["encoder"] = read_codec(src_dir)
    return BarkConfig(cfgs["semantic"], cfgs["coarse"], cfgs["fine"], codec_cfg), states


def read_checkpoint(src_dir):
    """Detect the layout of `src_dir` and return (BarkConfig, {stage: nanobark state dict}). src_dir may also
    be the {name: path} of a transformers-layout snapshot's files."""
    if isinstance(src_dir, dict):
        return read_transformers(src_dir)
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"checkpoint directory not found: {src_dir}")
    if os.path.exists(os.path.join(src_dir, "semantic.safetensors")):
        raise ConversionError(
            f"{src_dir} holds nanobark's own converted files, not a Bark checkpoint to convert "
            "(an unfinished or damaged conversion?); convert the original checkpoint again"
        )
    if os.path.exists(os.path.join(src_dir, "config.json")):
        return read_transformers(files_of(src_dir))
    for files in SUNO_FILES.values():
        if all(os.path.exists(os.path.join(src_dir, f)) for f in files):
            return read_suno(src_dir, files)
    raise ConversionError(
        f"{src_dir} is not a Bark checkpoint: expected config.json with model.safetensors or pytorch_model.bin "
        f"(Hub layout of suno/bark-small or suno/bark), or Suno's text.pt/coarse.pt/fine.pt (or *_2.pt)."
    )


def convert(src_dir, out_dir):
    """Convert `src_dir` into nanobark's layout at `out_dir`; returns out_dir.

    The whole folder is written beside `out_dir` and renamed into place (atomic_folder), so an interrupted
    or failed conversion leaves `out_dir` as it was, and one that replaces an earlier conversion never leaves
    a mix of the two.
    """
    src, out = (os.path.realpath(p) for p in (src_dir, out_dir))
    if src == out or out.startswith(src + os.sep) or src.startswith(out + os.sep):
        raise ConversionError(
            f"cannot convert {src_dir} into {out_dir}: the output would replace the source "
            "(or a folder holding it); choose an output folder outside the source"
        )
    check_output(out_dir)
    cfg, states = read_checkpoint(src_dir)
    return atomic_folder(out_dir, lambda tmp: write_converted(src_dir, tmp, cfg, states))


TEMP_PREFIX = ".converting-"  # + the target's name + "." + 12 hex digits: a folder being written, never read


def atomic_folder(target, write, keep=lambda path: False):
    """Call write(tmp) for a new folder beside `target`, then rename it to `target`, replacing what is there.

    All of it runs holding the file lock <target>.lock, so one process at a time writes `target`: one that
    waited for the lock writes nothing if keep(target) (the other one just made it), and a temporary folder
    of `target` found lying around is a killed writer's, deleted. A crash leaves `target` as it was, or
    missing if it came between the two renames: never a mix of two folders.
    """
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    with FileLock(os.path.join(parent, name + ".lock")):
        if keep(target):
            return target
        for old in os.listdir(parent):
            if re.fullmatch(re.escape(TEMP_PREFIX + name) + r"\.[0-9a-f]{12}", old):
                shutil.rmtree(os.path.join(parent, old), ignore_errors=True)
        tmp, old = (os.path.join(parent, f"{TEMP_PREFIX}{name}.{secrets.token_hex(6)}") for _ in "ab")
        os.mkdir(tmp, 0o777)  # the umask applies (mkdtemp's 0700 would hide a shared cache from other users)
        try:
            write(tmp)
            if os.path.lexists(target):
                os.rename(target, old)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return target


def check_output(out_dir):
    """A conversion replaces only what a conversion wrote: out_dir must be missing, empty, or converted."""
    if os.path.exists(out_dir) and read_meta(out_dir) is None:
        if not os.path.isdir(out_dir) or os.listdir(out_dir):
            raise ConversionError(
                f"{out_dir} exists and is not a nanobark conversion; a conversion would replace it whole, so "
                "choose a new folder (or an empty one, or one that `nanobark convert` wrote)"
            )


def write_converted(src, out_dir, cfg=None, states=None):
    """Write the converted files of `src` (a checkpoint folder, or {name: path} as read_checkpoint takes) into
    the (empty) folder `out_dir`, config.json last."""
    from safetensors.torch import save_file

    if states is None:
        cfg, states = read_checkpoint(src)
    files = src if isinstance(src, dict) else files_of(src)
    for stage in STAGES + (("encoder",) if states.get("encoder") is not None else ()):
        state = {k: v.contiguous() for k, v in states[stage].items()}
        write_atomic(
            os.path.join(out_dir, f"{stage}.safetensors"), lambda tmp: save_file(state, tmp, metadata={"format": "pt"})
        )
    for name in EXTRA_FILES:
        if name in files:
            copy_bounded(files[name], os.path.join(out_dir, name), MAX_SIDE_FILE, "the model file")
    if os.path.isdir(files.get("speaker_embeddings", "")):
        _copy_folder(files["speaker_embeddings"], os.path.join(out_dir, "speaker_embeddings"))
    # "encoder": whether encoder.safetensors was written (a cache converted before there was one gets one)
    has_encoder = states.get("encoder") is not None
    meta = {"format": "nanobark", "format_version": FORMAT_VERSION, "encoder": has_encoder, **cfg.to_dict()}
    write_atomic(os.path.join(out_dir, "config.json"), lambda tmp: _write_text(tmp, json.dumps(meta, indent=2)))
    return out_dir


def _copy_folder(src, dst):
    """Copy a folder's files (following the Hub cache's links); what is made here gets the umask's mode, not the
    source's (copytree would copy the source's modes)."""
    for folder, _, files in os.walk(src):
        out = os.path.join(dst, os.path.relpath(folder, src))
        os.makedirs(out, exist_ok=True)
        for f in files:
            copy_bounded(os.path.join(folder, f), os.path.join(out, f), MAX_SIDE_FILE, "the voice preset")


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
