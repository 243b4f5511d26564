"""Read a directory written by nanobark.convert: config.json plus one safetensors file per stage,
and the EnCodec encoder (encoder.safetensors) that only voice cloning reads; and voice cloning's other two
models, each a file of its own (hubert.safetensors, quantizer.safetensors: nanobark.convert.hubert).

The files are not trusted: safetensors checks every header against its file before a tensor is read, the
sizes in config.json are checked against the tensors before a model is built, and every tensor against the
shape and kind the model expects, so a damaged or tampered file fails with the name of the file rather than
deep inside torch.
"""

import os

import torch
from safetensors import safe_open

from ..codec import Codec, Encoder
from ..config import BarkConfig, HubertConfig
from ..files import read_json
from ..fine import FineGPT
from ..gpt import GPT
from ..hubert import Hubert
from ..layout import N_COARSE, SEMANTIC_VOCAB_SIZE
from ..quantizer import SemanticQuantizer, quantizer_config

STAGE_CLASSES = {"semantic": GPT, "coarse": GPT, "fine": FineGPT, "codec": Codec}
# the layout nanobark.convert writes; 2: the codec's upsampling blocks are "ups.*" (were "stages.*").
# A folder of another version is converted again (the Hub cache) or refused with advice (a folder of yours).
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A weights file that is damaged, tampered with, or does not fit the model."""


def read_meta(path):
    """The config.json of a finished conversion at `path` as a dict (config.json is written last), else None.
    Its "format_version" (1 if absent) says which nanobark wrote it."""
    try:
        meta = read_json(os.path.join(path, "config.json"), "the model's config")
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == "nanobark" else None


def _reconvert_hint(path):
    return (
        f"delete {path} and convert again (nanobark convert SRC {path}); "
        "a model in nanobark's cache is re-converted by the next from_pretrained"
    )


def load_config(path) -> BarkConfig:
    d = read_meta(path)
    if d is None:
        raise FileNotFoundError(
            f"{path} is not a nanobark checkpoint (no config.json written by nanobark.convert); "
            f"convert one with: nanobark convert SRC {path}"
        )
    try:
        config = BarkConfig.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}/config.json does not describe a Bark model ({type(e).__name__}: {e}); " + _reconvert_hint(path)
        ) from None
    version = d.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was converted by another nanobark (format {version}; this one "
            f"reads format {FORMAT_VERSION}); " + _reconvert_hint(path)
        )
    return config


def read_safetensors(path, device="cpu", names=None):
    """{name: tensor} of a safetensors file (only those of `names` it has, if given); safetensors checks the
    header against the file first (sizes, offsets, dtypes). Any failure is a CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            keys = set(f.keys())
            return {k: f.get_tensor(k) for k in (keys if names is None else keys & set(names))}
    except Exception as e:  # the library's SafetensorError, or an OSError
        raise CheckpointError(
            f"{path} is not a safetensors file, or a damaged one (truncated, or a pickle): {e}"
        ) from None


def _count(shapes, prefix):
    """How many numbered blocks `shapes` holds under `prefix` ("h." -> the N of every "h.N.")."""
    return len({k[len(prefix) :].split(".", 1)[0] for k in shapes if k.startswith(prefix)})


def _at_most(ours, theirs):
    """Are the config's size(s) whole numbers no larger than the file's, one by one?"""
    ours, theirs = (x if isinstance(x, (list, tuple)) else [x] for x in (ours, theirs))
    return len(ours) == len(theirs) and all(
        type(o) is int and type(t) is int and 0 <= o <= t for o, t in zip(ours, theirs)
    )


def size_problems(stage, cfg, shapes):
    """The config's sizes that decide how much gets built, checked against the weights file's {name: shape}.

    A config.json asking for 10^6 layers must be refused before 10^6 layers are built, so a config can
    never make loading build more than the file holds; the shapes are compared after (state_problems).
    """
    if stage == "codec":
        sizes = {
            "len(ratios)": (len(cfg.ratios), _count(shapes, "ups.")),
            "lstm_layers": (cfg.lstm_layers, sum(k.startswith("lstm.weight_ih_l") for k in shapes)),
            "codebooks (n_codebooks, codebook_size, dimension)": (
                [cfg.n_codebooks, cfg.codebook_size, cfg.dimension],
                shapes.get("codebooks"),
            ),
        }
    elif stage == "encoder":
        sizes = {
            "len(ratios)": (len(cfg.ratios), _count(shapes, "downs.")),
            "lstm_layers": (cfg.lstm_layers, sum(k.startswith("lstm.weight_ih_l") for k in shapes)),
        }
    else:
        wpe = shapes.get("wpe.weight") or [None, None]
        sizes = {
            "n_layer": (cfg.n_layer, _count(shapes, "h.")),
            "block_size": (cfg.block_size, wpe[0]),
            "n_embd": (cfg.n_embd, wpe[1]),
        }
        if stage == "fine":
            sizes["n_codes_total"] = (cfg.n_codes_total, _count(shapes, "wtes."))
    # more than the file holds is refused here; less builds a smaller model, whose missing and unexpected
    # tensors state_problems then names one by one
    problems = [
        f"{name} is {ours} but the weights hold {theirs}"
        for name, (ours, theirs) in sizes.items()
        if theirs is not None and not _at_most(ours, theirs)
    ]
    given = getattr(cfg, "n_codes_given", 0)  # generation predicts codebooks N_COARSE.. (fine.forward's pred_idx)
    if not (type(given) is int and 0 <= given <= N_COARSE):
        problems.append(f"n_codes_given is {given!r} but the fine stage predicts from codebook {N_COARSE} on")
    heads, width = getattr(cfg, "n_head", 1), getattr(cfg, "n_embd", 1)
    if not (type(heads) is int and type(width) is int and 1 <= heads <= width and width % heads == 0):
        problems.append(f"n_head {heads!r} does not divide n_embd {width!r}")
    return problems


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


def _does_not_fit(file, problems):
    shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
    return CheckpointError(f"{file} does not fit the model: {shown}")


def _load(file, build, fits, hint, device, dtype=None, finish=None):
    """The model build(shapes) makes, with the weights of `file`, in eval mode: the file is read (safetensors
    checks it), fits(shapes) -> problems is asked before the model is built (on the meta device), every tensor
    is compared with the model's, then they are loaded and finish(model) adds what is not in its state dict.
    Any failure is one CheckpointError naming the file, ending with `hint` (what to do)."""
    try:
        state = read_safetensors(file, device)
        shapes = {k: list(v.shape) for k, v in state.items()}
        problems = fits(shapes)
        if not problems:
            with torch.device("meta"):
                model = build(shapes)
            problems = state_problems(model.state_dict(), state)
        if problems:
            raise _does_not_fit(file, problems)
        model.load_state_dict(state, strict=True, assign=True)
        if finish is not None:
            finish(model)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {hint}") from None
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_stage(path, stage, config=None, device="cpu", dtype=torch.float32):
    """Build one stage ('semantic', 'coarse', 'fine' or 'codec') and load its weights, in eval mode."""
    cfg = getattr(config or load_config(path), stage)
    return _load(
        os.path.join(path, f"{stage}.safetensors"),
        lambda shapes: STAGE_CLASSES[stage](cfg),
        lambda shapes: size_problems(stage, cfg, shapes),
        _reconvert_hint(path),
        device,
        dtype,
    )


ENCODER_FILE = "encoder.safetensors"  # in a converted folder, beside the codec


def load_encoder(path, config=None, device="cpu"):
    """The EnCodec encoder of a converted folder, in eval mode: encoder.safetensors, plus the codebooks, which
    are the codec's and are read (alone) from codec.safetensors. Only voice cloning needs it."""
    cfg, file = (config or load_config(path)).codec, os.path.join(path, ENCODER_FILE)
    if not os.path.isfile(file):
        raise CheckpointError(
            f"{path} has no encoder.safetensors, the EnCodec encoder that voice cloning needs (it was converted "
            "by an older nanobark, or from weights without the encoder); " + _reconvert_hint(path)
        )
    codec_file = os.path.join(path, "codec.safetensors")

    def add_codebooks(model):  # a buffer not in the state dict (persistent=False)
        books = read_safetensors(codec_file, device, names=["codebooks"])
        problems = state_problems({"codebooks": model.codebooks}, books)
        if problems:
            raise _does_not_fit(codec_file, problems)
        model.codebooks = books["codebooks"]

    return _load(
        file,
        lambda shapes: Encoder(cfg),
        lambda shapes: size_problems("encoder", cfg, shapes),
        _reconvert_hint(path),
        device,
        finish=add_codebooks,
    )


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

    def fits(shapes):  # refused before anything is built, as size_problems does for the stages
        have = _count(shapes, "layers.")
        return [] if _at_most(cfg.n_layer, have) else [f"n_layer is {cfg.n_layer}, the weights hold {have}"]

    file = os.path.join(path, HUBERT_FILE)
    return _load(file, lambda shapes: Hubert(cfg), fits, _clone_hint(file), device)


def load_quantizer(path, device="cpu"):
    """The semantic quantizer of path/quantizer.safetensors (its version and sizes read from it), in eval mode."""
    file = os.path.join(path, QUANTIZER_FILE)
    return _load(
        file,
        lambda shapes: SemanticQuantizer(quantizer_config(shapes)),
        lambda shapes: quantizer_problems(quantizer_config(shapes)),
        _clone_hint(file),
        device,
    )


def _clone_hint(file):
    return f"delete {file}: the next clone converts it again (or convert it again, if you converted it)"
