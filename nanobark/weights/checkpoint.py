"""Read a directory written by nanobark.convert: config.json plus one safetensors file per stage,
and the EnCodec encoder (encoder.safetensors) that only voice cloning reads; and voice cloning's other two
models, each a file of its own (hubert.safetensors, quantizer.safetensors: nanobark.convert.cloning).

The files are not trusted: every safetensors header is checked against the file's size before any
tensor is read, and every tensor against the shape and kind the model expects, so a damaged or
tampered file fails with the name of the file and the tensor rather than deep inside torch.
"""

import json
import math
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..codec import Codec, Encoder
from ..config import BarkConfig, HubertConfig
from ..fine import FineGPT
from ..gpt import GPT
from ..hubert import Hubert
from ..layout import SEMANTIC_VOCAB_SIZE
from ..quantizer import SemanticQuantizer, quantizer_config

STAGE_CLASSES = {"semantic": GPT, "coarse": GPT, "fine": FineGPT, "codec": Codec}
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# the layout nanobark.convert writes; 2: the codec's upsampling blocks are "ups.*" (were "stages.*").
# A folder of another version is converted again (the Hub cache) or refused with advice (a folder of yours).
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A weights file that is damaged, tampered with, or does not fit the model."""


def _finished_config(path):
    """The config.json of a finished conversion at `path` as a dict (config.json is written last), else None."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == "nanobark" else None


def converted_version(path):
    """The format version of a finished conversion at `path`, else None."""
    meta = _finished_config(path)
    return None if meta is None else meta.get("format_version", 1)


def is_converted(path):
    """True for a finished conversion, of this format version or another."""
    return converted_version(path) is not None


def is_current(path):
    """True for a finished conversion that this nanobark reads and that has all it writes: a copy in the cache
    converted before the EnCodec encoder was kept (no "encoder" entry) is converted again, once, for cloning."""
    meta = _finished_config(path) or {}
    return meta.get("format_version", 1) == FORMAT_VERSION and "encoder" in meta


def _reconvert_hint(path):
    return (
        f"delete {path} and convert again (nanobark convert SRC {path}); "
        "a model in nanobark's cache is re-converted by the next from_pretrained"
    )


def load_config(path) -> BarkConfig:
    d = _finished_config(path)  # read once: the config and its format version
    if d is None:
        raise FileNotFoundError(
            f"{path} is not a nanobark checkpoint (no config.json written by nanobark.convert); "
            f"convert one with: nanobark convert SRC {path}"
        )
    try:
        config = BarkConfig.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}/config.json does not describe a Bark model ({type(e).__name__}: {e}); "
            + _reconvert_hint(path)
        ) from None
    version = d.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was converted by another nanobark (format {version}; this one "
            f"reads format {FORMAT_VERSION}); " + _reconvert_hint(path)
        )
    return config


def tensor_entry_problem(entry, data_bytes):
    """What is wrong with one safetensors header entry {dtype, shape, data_offsets}, or None."""
    try:
        dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
    except (TypeError, KeyError, ValueError):
        return "has a malformed header entry (needs dtype, shape and two data_offsets)"
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        return f"has unknown dtype {dtype!r}"
    if not all(type(x) is int and x >= 0 for x in shape + [begin, end]) or begin > end:
        return f"has an invalid shape {shape} or byte range {begin}..{end}"
    if end > data_bytes:
        return f"needs bytes {begin}..{end} but the file holds only {data_bytes} bytes of data"
    if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        return (
            f"is declared {dtype} {shape} ({math.prod(shape) * DTYPE_BYTES[dtype]} bytes) "
            f"but spans {end - begin} bytes"
        )
    return None


def check_safetensors(path):
    """Check a safetensors header against the file -> the header; raise CheckpointError naming the first bad tensor."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path} is not a safetensors file (its header length {n} does not fit the "
                f"{size}-byte file): truncated, or another format such as a pickle"
            )
        try:
            header = json.loads(f.read(n))
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (its header is not a JSON object)")
    for name, entry in header.items():
        problem = None if name == "__metadata__" else tensor_entry_problem(entry, size - 8 - n)
        if problem:
            raise CheckpointError(f"{path}: tensor {name!r} {problem}")
    return header


def _count(header, prefix):
    """How many numbered blocks the header holds under `prefix` ("h." -> the N of every "h.N.")."""
    return len({k[len(prefix) :].split(".", 1)[0] for k in header if k.startswith(prefix)})


def _at_most(ours, theirs):
    """Are the config's size(s) whole numbers no larger than the file's, one by one?"""
    ours, theirs = (x if isinstance(x, (list, tuple)) else [x] for x in (ours, theirs))
    return len(ours) == len(theirs) and all(type(o) is int and type(t) is int and 0 <= o <= t
                                            for o, t in zip(ours, theirs))  # fmt: skip


def size_problems(stage, cfg, header):
    """The config's sizes that decide how much gets built, checked against the weights file's header first.

    A config.json asking for 10^6 layers must be refused before 10^6 layers are built, so a config can
    never make loading build more than the file holds; the shapes are compared after (state_problems).
    """
    shapes = {k: v.get("shape") for k, v in header.items() if k != "__metadata__"}
    if stage == "encoder":
        sizes = {"len(ratios)": (len(cfg.ratios), _count(shapes, "downs.")),
                 "lstm_layers": (cfg.lstm_layers, sum(k.startswith("lstm.weight_ih_l") for k in shapes))}  # fmt: skip
    elif stage == "codec":
        sizes = {"len(ratios)": (len(cfg.ratios), _count(shapes, "ups.")),
                 "lstm_layers": (cfg.lstm_layers, sum(k.startswith("lstm.weight_ih_l") for k in shapes)),
                 "codebooks (n_codebooks, codebook_size, dimension)":
                     ([cfg.n_codebooks, cfg.codebook_size, cfg.dimension], shapes.get("codebooks"))}  # fmt: skip
    else:
        wpe = shapes.get("wpe.weight") or [None, None]
        sizes = {"n_layer": (cfg.n_layer, _count(shapes, "h.")), "block_size": (cfg.block_size, wpe[0]),
                 "n_embd": (cfg.n_embd, wpe[1])}  # fmt: skip
        if stage == "fine":
            sizes["n_codes_total"] = (cfg.n_codes_total, _count(shapes, "wtes."))
    # more than the file holds is refused here; less builds a smaller model, whose missing and unexpected
    # tensors state_problems then names one by one
    problems = [f"{name} is {ours} but the weights hold {theirs}" for name, (ours, theirs) in sizes.items()
                if theirs is not None and not _at_most(ours, theirs)]  # fmt: skip
    heads, width = getattr(cfg, "n_head", 1), getattr(cfg, "n_embd", 1)
    if not (type(heads) is int and type(width) is int and 1 <= heads <= width and width % heads == 0):
        problems.append(f"n_head {heads!r} does not divide n_embd {width!r}")
    return problems


def read_safetensors(path, device="cpu", expect=None, names=None):
    """{name: tensor} of a safetensors file, its header checked first; any failure is a CheckpointError.

    expect(header) -> list of problems is asked before any tensor is read (see size_problems).
    names: read only these tensors (those the file has), not the whole file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is missing")
    header = check_safetensors(path)
    problems = expect(header) if expect else []
    if problems:
        raise CheckpointError(f"{path} does not fit the model in config.json: {'; '.join(problems)}")
    try:
        if names is None:
            return load_file(path, device=str(device))
        with safe_open(path, framework="pt", device=str(device)) as f:
            return {name: f.get_tensor(name) for name in names if name in header}
    except Exception as e:  # what the header check does not look for, e.g. overlapping byte ranges
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {e})") from None


def state_problems(expected, state):
    """Differences between two {name: tensor} dicts in names, shapes and kind (float or not), as strings."""
    problems = [f"missing tensor {k!r}" for k in expected if k not in state]
    problems += [f"unexpected tensor {k!r}" for k in state if k not in expected]
    for k in expected.keys() & state.keys():
        want, got = expected[k], state[k]
        if got.shape != want.shape:
            problems.append(f"tensor {k!r} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif got.is_floating_point() != want.is_floating_point():
            problems.append(f"tensor {k!r} has dtype {got.dtype}, expected {want.dtype}")
    return sorted(problems)


def _first_five(problems):
    return "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")


def load_stage(path, stage, config=None, device="cpu", dtype=torch.float32):
    """Build one stage ('semantic', 'coarse', 'fine' or 'codec') and load its weights, in eval mode."""
    config = config or load_config(path)
    cfg, file = getattr(config, stage), os.path.join(path, f"{stage}.safetensors")
    try:  # the header first: the model is built only once its sizes are known to fit the file
        state = read_safetensors(file, device, expect=lambda header: size_problems(stage, cfg, header))
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {_reconvert_hint(path)}") from None
    with torch.device("meta"):
        model = STAGE_CLASSES[stage](cfg)
    problems = state_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{file} does not fit the model in config.json: {_first_five(problems)}; {_reconvert_hint(path)}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_encoder(path, config=None, device="cpu"):
    """The EnCodec encoder of a converted folder, in eval mode: encoder.safetensors, plus the codebooks, which
    are the codec's and are read (alone) from codec.safetensors. Only voice cloning needs it."""
    config = config or load_config(path)
    cfg, file = config.codec, os.path.join(path, "encoder.safetensors")
    if not os.path.isfile(file):
        raise CheckpointError(
            f"{path} has no encoder.safetensors, the EnCodec encoder that voice cloning needs (it was converted "
            "by an older nanobark, or from weights without the encoder); " + _reconvert_hint(path)
        )
    codec_file = os.path.join(path, "codec.safetensors")
    try:
        state = read_safetensors(file, device, expect=lambda header: size_problems("encoder", cfg, header))
        books = read_safetensors(codec_file, device, names=["codebooks"],
                                 expect=lambda header: size_problems("codec", cfg, header))  # fmt: skip
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {_reconvert_hint(path)}") from None
    with torch.device("meta"):
        model = Encoder(cfg)
    problems = state_problems(model.state_dict(), state)
    problems += [f"{codec_file}: {p}" for p in state_problems({"codebooks": model.codebooks}, books)]
    if problems:
        raise CheckpointError(
            f"{file} does not fit the model in config.json: {_first_five(problems)}; {_reconvert_hint(path)}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model.codebooks = books["codebooks"]  # not in the state dict (persistent=False)
    return model.to(device).eval().requires_grad_(False)


# ---- voice cloning's HuBERT and semantic quantizer: a file each, no config.json (their sizes are fixed, or
# read from the tensors' shapes)
HUBERT_FILE, QUANTIZER_FILE = "hubert.safetensors", "quantizer.safetensors"


def quantizer_problems(cfg):
    """Why a quantizer of these sizes cannot make Bark's ids from HuBERT base's features, as strings."""
    problems = []
    if cfg.n_input != HubertConfig().n_embd:
        problems.append(f"it reads {cfg.n_input}-wide features, HuBERT base gives {HubertConfig().n_embd}")
    if cfg.vocab_size != SEMANTIC_VOCAB_SIZE:
        problems.append(f"it gives {cfg.vocab_size} ids, Bark has {SEMANTIC_VOCAB_SIZE} semantic ids")
    return problems


def load_hubert(path, device="cpu", cfg=None):
    """HuBERT base up to the layer the quantizer reads, from path/hubert.safetensors, in eval mode."""
    cfg = cfg or HubertConfig()

    def problems(shapes):  # refused before anything is built, as size_problems does for the stages
        have = _count(shapes, "layers.")
        return [] if _at_most(cfg.n_layer, have) else [f"n_layer is {cfg.n_layer}, the weights hold {have}"]

    return _load_alone(os.path.join(path, HUBERT_FILE), problems, lambda shapes: Hubert(cfg), device)


def load_quantizer(path, device="cpu"):
    """The semantic quantizer of path/quantizer.safetensors (its version and sizes read from it), in eval mode."""
    file = os.path.join(path, QUANTIZER_FILE)
    return _load_alone(file, lambda shapes: quantizer_problems(quantizer_config(shapes)),
                       lambda shapes: SemanticQuantizer(quantizer_config(shapes)), device)  # fmt: skip


def _load_alone(file, problems, build, device):
    """Check the file's header, then problems(shapes); build(shapes) on the meta device; check every tensor
    against it; load. Any failure is a CheckpointError naming the file and what to do."""
    hint = (
        f"delete {file}: the next clone converts it again (a file you converted yourself: convert it again)"
    )
    try:
        if not os.path.isfile(file):
            raise CheckpointError(f"{file} is missing")
        shapes = {k: v["shape"] for k, v in check_safetensors(file).items() if k != "__metadata__"}
        found = problems(shapes)
        if found:
            raise CheckpointError(f"{file} does not fit the model: {'; '.join(found)}")
        state = read_safetensors(file, device)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {hint}") from None
    with torch.device("meta"):
        model = build(shapes)
    found = state_problems(model.state_dict(), state)
    if found:
        raise CheckpointError(f"{file} does not fit the model: {_first_five(found)}; {hint}")
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)
