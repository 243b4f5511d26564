"""HuBERT and the semantic quantizer, on random weights: nanobark's features equal transformers' HubertModel
hidden_states[9] (the layer the quantizer reads), the key tables take every tensor of the real layouts
(transformers' and fairseq's) and drop only the named ones, and the quantizer's ids equal those of a replica
of the community's quantizer saved the way the community saves it.

The parity tests record their largest absolute difference as the test property "max_abs_diff".
"""

import json
import os
import re
from zipfile import ZipFile

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from helpers import references
from nanobark.config import HubertConfig, QuantizerConfig
from nanobark.hubert import Hubert, n_frames
from nanobark.quantizer import SemanticQuantizer, quantizer_config
from nanobark.weights.checkpoint import CheckpointError, load_hubert, load_quantizer
from nanobark.weights.convert.hubert import convert_hubert, convert_quantizer, hubert_layout, take_hubert
from nanobark.weights.convert.source import ConversionError, Source
from weights_convert.random_init import randomize_

CFG = HubertConfig()
# one frame exactly, 1 s, 1 s and a sample (an odd length), 3 s and a few samples
LENGTHS = [400, 16_000, 16_001, 16_000 * 3 + 7]
# a small HuBERT with all 12 layers (so that the last three are there to be dropped), for the file round trips
TINY_HF = dict(
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY = HubertConfig(conv_dim=16, n_embd=32, n_head=2, n_inner=64, pos_kernel=16, pos_groups=4)


def _hf_model(seed, **overrides):
    """A random transformers HubertModel: base-ls960's shape unless overridden, norms and the positional
    conv's weight-norm gains randomized too (a fresh model has ones, zeros and g = ||v||)."""
    references()
    from transformers import HubertConfig as HFConfig
    from transformers import HubertModel

    torch.manual_seed(seed)
    return randomize_(HubertModel(HFConfig(attn_implementation="eager", **overrides))).eval()


def _ours(sd, cfg):
    src = Source(sd, "test")
    state = take_hubert(src, cfg, *hubert_layout(sd))
    src.finish()
    model = Hubert(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def base():
    hf = _hf_model(1)
    return hf, _ours(hf.state_dict(), CFG)


def test_frames_follow_the_conv_arithmetic():
    for L in [*range(0, 2000), 16_000, 160_000, 16_000 * 60 + 13]:
        assert n_frames(L) == (max(0, (L - 400) // 320 + 1) if L >= 400 else 0), L
    assert (n_frames(16_000), n_frames(160_000)) == (49, 499)  # Bark's SEMANTIC_RATE_HZ = 49.9


@pytest.mark.parametrize("batch", [1, 2])
@torch.no_grad()
def test_features_equal_transformers_hidden_states_9(base, batch, record_property):
    hf, ours = base
    worst = 0.0
    for L in LENGTHS:
        audio = torch.randn(batch, L) * 0.3
        want = hf(audio, output_hidden_states=True).hidden_states[9]  # 0 is the input to the first layer
        got = ours(audio)
        assert got.shape == want.shape == (batch, (L - 400) // 320 + 1, 768), L
        worst = max(worst, (got - want).abs().max().item())
    record_property("max_abs_diff", worst)
    assert worst < 1e-4


def test_too_short_or_misshaped_audio_is_refused(base):
    with pytest.raises(ValueError, match="at least one frame"):
        base[1](torch.zeros(1, 399))
    with pytest.raises(ValueError, match="batch, samples"):
        base[1](torch.zeros(16_000))


# ---- the key tables, on the real layouts

# transformers name -> fairseq name, written from fairseq's module tree (wav2vec2.py: ConvFeatureExtractionModel
# blocks are Sequential(conv, dropout, [GroupNorm,] GELU), pos_conv is Sequential(weight-normed conv, SamePad,
# GELU), TransformerSentenceEncoderLayer has self_attn, self_attn_layer_norm, fc1, fc2, final_layer_norm;
# hubert.py: HubertModel.layer_norm and post_extract_proj), independently of nanobark's table
TO_FAIRSEQ = [
    (r"^feature_extractor\.conv_layers\.(\d)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (r"parametrizations\.weight\.original0$", "weight_g"),
    (r"parametrizations\.weight\.original1$", "weight_v"),
    (r"\.attention\.", ".self_attn."),
    (r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
]


def _fairseq_state(hf_sd, n_embd=768, final_dim=256, n_targets=504):
    """A fairseq HubertModel state dict holding a transformers model's weights, and fairseq's pre-training
    tensors (mask_emb, final_proj, label_embs_concat: base-ls960 has 504 k-means targets of 256 dims)."""
    sd = {}
    for k, v in hf_sd.items():
        if k != "masked_spec_embed":  # transformers' own training-only tensor
            for pattern, repl in TO_FAIRSEQ:
                k = re.sub(pattern, repl, k)
            sd[k] = v
    device = next(iter(hf_sd.values())).device
    extra = {
        "mask_emb": (n_embd,),
        "final_proj.weight": (final_dim, n_embd),
        "final_proj.bias": (final_dim,),
        "label_embs_concat": (n_targets, final_dim),
    }
    return {**sd, **{k: torch.rand(shape, device=device) for k, shape in extra.items()}}


class _Recording(Source):
    """A Source that remembers what it was told to discard."""

    def __init__(self, sd, origin):
        super().__init__(sd, origin)
        self.dropped = []

    def discard(self, predicate):
        self.dropped += [k for k in self.sd if predicate(k)]
        super().discard(predicate)


@pytest.mark.parametrize("variant", ["HubertModel", "legacy weight_g/weight_v", "hubert. prefix", "fairseq"])
def test_key_tables_take_the_whole_real_layout(variant):
    """Every tensor of base-ls960's layout (built on the meta device) is taken or deliberately dropped."""
    references()
    from transformers import HubertConfig as HFConfig
    from transformers import HubertModel

    with torch.device("meta"):
        hf_sd = HubertModel(HFConfig()).state_dict()
    assert (len(hf_sd), sum(v.numel() for v in hf_sd.values())) == (211, 94_371_712)  # base-ls960's
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in hf_sd.items()
    }
    sd, prefix, training_only = {
        "HubertModel": (hf_sd, "", {"masked_spec_embed"}),
        "legacy weight_g/weight_v": (legacy, "", {"masked_spec_embed"}),
        "hubert. prefix": ({f"hubert.{k}": v for k, v in legacy.items()}, "hubert.", {"hubert.masked_spec_embed"}),
        "fairseq": (
            _fairseq_state(hf_sd),
            "",
            {"mask_emb", "final_proj.weight", "final_proj.bias", "label_embs_concat"},
        ),
    }[variant]
    src = _Recording(sd, variant)
    state = take_hubert(src, CFG, *hubert_layout(sd))
    src.finish()  # nothing missing, misshaped or left over
    with torch.device("meta"):
        expected = Hubert(CFG).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    last_three = {k for k in sd if re.match(re.escape(prefix) + r"encoder\.layers\.(9|10|11)\.", k)}
    assert len(last_three) == 3 * 16
    assert sorted(src.dropped) == sorted(training_only | last_three)


@pytest.fixture(scope="module")
def tiny():
    """A small random transformers HubertModel (all 12 layers) and its fairseq checkpoint's contents."""
    hf = _hf_model(2, **TINY_HF)
    checkpoint = {
        "model": _fairseq_state(hf.state_dict(), n_embd=32, final_dim=8, n_targets=20),
        # what fairseq stores beside the weights, as plain data (its real files also hold classes: see below)
        "cfg": {"model": {"_name": "hubert", "encoder_layers": 12, "encoder_embed_dim": 32}, "task": {}},
        "args": None,
    }
    return hf, checkpoint


@torch.no_grad()
def test_fairseq_checkpoint_converts_to_the_same_features(tiny, tmp_path, record_property):
    hf, checkpoint = tiny
    torch.save(checkpoint, tmp_path / "hubert_base_ls960.pt")
    written = convert_hubert(str(tmp_path / "hubert_base_ls960.pt"), str(tmp_path / "out"), TINY)
    assert written == str(tmp_path / "out" / "hubert.safetensors")
    assert not any(k.startswith("layers.9.") for k in load_file(written))  # the last three are not kept
    ours = load_hubert(str(tmp_path / "out"), cfg=TINY)
    worst = 0.0
    for L in (400, 16_001):
        audio = torch.randn(2, L) * 0.3
        want = hf(audio, output_hidden_states=True).hidden_states[9]
        worst = max(worst, (ours(audio) - want).abs().max().item())
    record_property("max_abs_diff", worst)
    assert worst < 1e-4


@torch.no_grad()
def test_transformers_snapshot_converts_to_the_same_features(tiny, tmp_path):
    hf, checkpoint = tiny
    hf.save_pretrained(tmp_path / "snapshot")  # config.json + model.safetensors, as on the Hub's refs/pr/2
    convert_hubert(str(tmp_path / "snapshot"), str(tmp_path / "a"), TINY)
    torch.save(checkpoint, tmp_path / "fairseq.pt")
    convert_hubert(str(tmp_path / "fairseq.pt"), str(tmp_path / "b"), TINY)
    audio = torch.randn(1, 16_001) * 0.3
    a, b = (load_hubert(str(tmp_path / d), cfg=TINY)(audio) for d in "ab")
    assert torch.equal(a, b)  # the same weights through either table: the same bits
    assert (a - hf(audio, output_hidden_states=True).hidden_states[9]).abs().max() < 1e-4


class TaskState:
    """Stands in for fairseq's training state, which its real checkpoints pickle as classes."""


def test_a_checkpoint_that_pickles_classes_is_refused(tiny, tmp_path):
    torch.save({**tiny[1], "task_state": TaskState()}, tmp_path / "hubert.pt")
    with pytest.raises(ConversionError, match="refusing to load.*GLOBAL .*TaskState"):
        convert_hubert(str(tmp_path / "hubert.pt"), str(tmp_path / "out"), TINY)
    assert not os.path.exists(tmp_path / "out" / "hubert.safetensors")


def test_damaged_hubert_file_is_named(tiny, tmp_path):
    torch.save(tiny[1], tmp_path / "hubert.pt")
    file = convert_hubert(str(tmp_path / "hubert.pt"), str(tmp_path / "out"), TINY)
    state = load_file(file)
    del state["layers.4.ln_2.bias"]
    save_file(state, file)
    with pytest.raises(CheckpointError, match="hubert.safetensors does not fit.*missing tensor 'layers.4.ln_2.bias'"):
        load_hubert(str(tmp_path / "out"), cfg=TINY)
    with pytest.raises(CheckpointError, match="n_layer is 12, the weights hold 9"):
        load_hubert(str(tmp_path / "out"), cfg=HubertConfig(**{**TINY.__dict__, "n_layer": 12}))


# ---- the semantic quantizer


class CustomTokenizer(nn.Module):
    """gitmylo's quantizer as its code has it (customtokenizer.py, MIT): a 2-D (frames, 768) input, LogSoftmax
    and argmax over dim 1, saved as a state dict with a JSON "<name>/.info" appended to the zip. The intermediate
    width is a parameter here (4096 in the published version 1 files) to keep the test's files small."""

    def __init__(self, hidden_size=1024, input_size=768, output_size=10_000, version=0, intermediate_size=4096):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, 2, batch_first=True)
        self.intermediate = nn.Linear(hidden_size, intermediate_size) if version == 1 else None
        self.fc = nn.Linear(intermediate_size if version == 1 else hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)
        self.sizes = dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size, version=version)

    def forward(self, x):
        out, _ = self.lstm(x)
        if self.intermediate is not None:
            out = self.intermediate(out)
        return self.softmax(self.fc(out))

    @torch.no_grad()
    def get_token(self, x):
        return torch.argmax(self(x), dim=1)

    def save(self, path, info=True):
        torch.save(self.state_dict(), path)
        if info:
            info_path = ".".join(os.path.basename(path).split(".")[:-1]) + "/.info"
            with ZipFile(path, "a") as model_zip:
                model_zip.writestr(info_path, json.dumps(self.sizes))


@pytest.mark.parametrize("info", [True, False], ids=["with .info", "without .info"])
@pytest.mark.parametrize("version", [0, 1])
@torch.no_grad()
def test_quantizer_ids_equal_the_community_replica(version, info, tmp_path):
    torch.manual_seed(version)
    ref = CustomTokenizer(hidden_size=64, version=version, intermediate_size=256).eval()
    # spread the logits, so that the argmax moves from frame to frame
    for layer in (ref.fc, ref.intermediate) if version else (ref.fc,):
        layer.weight.mul_(20 if layer is ref.fc else 5)
    path = str(tmp_path / "quantifier_test.pth")
    ref.save(path, info)
    assert ("quantifier_test/.info" in ZipFile(path).namelist()) == info
    assert torch.load(path, weights_only=True).keys() == ref.state_dict().keys()  # the extra member is ignored
    convert_quantizer(path, str(tmp_path / "out"))
    ours = load_quantizer(str(tmp_path / "out"))
    assert ours.cfg == QuantizerConfig(n_hidden=64, n_intermediate=256 if version else 0)
    assert ours.cfg.version == version
    features = torch.randn(2, 150, 768)
    want = torch.stack([ref.get_token(f) for f in features])  # one clip at a time, as the original runs
    assert torch.equal(ours(features[:1]), want[:1])
    assert torch.equal(ours(features), want)  # and a batch of two
    assert ours(features).dtype == torch.int64
    assert len(want.unique()) > 100  # not a constant


@pytest.mark.parametrize("version, n_params", [(0, 25_995_024), (1, 60_913_424)])
def test_quantizer_sizes_are_read_from_the_published_shapes(version, n_params):
    with torch.device("meta"):
        sd = CustomTokenizer(version=version).state_dict()
        cfg = quantizer_config({k: v.shape for k, v in sd.items()})
        ours = SemanticQuantizer(cfg).state_dict()
    assert cfg == QuantizerConfig(n_intermediate=4096 if version else 0)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in sd.items()}
    assert sum(v.numel() for v in ours.values()) == n_params


def test_a_quantizer_for_other_ids_is_refused(tmp_path):
    CustomTokenizer(hidden_size=16, output_size=1024).save(str(tmp_path / "q.pth"))
    with pytest.raises(ConversionError, match="gives 1024 ids, Bark has 10000"):
        convert_quantizer(str(tmp_path / "q.pth"), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "quantizer.safetensors")


def test_a_hubert_file_is_not_a_quantizer(tiny, tmp_path):
    torch.save(tiny[1], tmp_path / "hubert.pt")
    file = convert_hubert(str(tmp_path / "hubert.pt"), str(tmp_path / "out"), TINY)
    os.rename(file, tmp_path / "out" / "quantizer.safetensors")
    with pytest.raises(CheckpointError, match="quantizer.safetensors does not fit.*missing tensor 'fc.weight'"):
        load_quantizer(str(tmp_path / "out"))
