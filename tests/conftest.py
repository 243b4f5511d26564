"""Shared fixtures. The reference implementations are imported only by the tests that compare with them.

Suno's `bark` imports `encodec`, which imports `torchaudio` at import time; torchaudio does not load beside
the CPU build of torch. transformers must be imported first (it probes torchaudio itself), then an empty
module stands in for torchaudio so `import bark` succeeds (`references()` does both). nanobark never needs
torchaudio. The tests of the models, the sampler, the tokenizer's prompt layout and the package structure
import no reference at module level, so they run with torch alone (the others are skipped there).
"""

import json
import os
import sys
import types

import numpy as np
import pytest
import torch

from weights_convert.random_init import randomize_  # noqa: F401  (re-exported for the tests)

torch.set_num_threads(2)


def references(module_level=False):
    """Import transformers, then stand in for torchaudio, so Suno's `bark` and `encodec` import too.

    Without the test extra installed, the calling test (or module) is skipped; CI sets
    NANOBARK_REQUIRE_REFERENCES=1, which makes that an error instead.
    """
    try:
        import transformers  # noqa: F401  (first: it probes torchaudio itself)

        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
        import bark  # noqa: F401
    except ImportError as e:
        if os.environ.get("NANOBARK_REQUIRE_REFERENCES"):
            raise
        pytest.skip(
            f"a reference implementation is not installed ({e}); pip install -e '.[test]'",
            allow_module_level=module_level,
        )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a longer end-to-end test")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- tiny random models with the real token layout -------------------------------------------------

TINY = dict(num_layers=2, num_heads=2, hidden_size=32, block_size=1024, bias=False, dropout=0.0)


def tiny_hf_config(**overrides):
    references()
    from transformers import BarkConfig, EncodecConfig

    sub = {**TINY, **overrides}
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=EncodecConfig().to_dict(),
    )


@pytest.fixture(scope="session")
def hf_bark():
    """A tiny random transformers BarkModel (real vocab sizes and real EnCodec 24 kHz shapes)."""
    references()
    from transformers import BarkModel

    torch.manual_seed(1234)
    return randomize_(BarkModel(tiny_hf_config())).eval()


VOCAB = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(99)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~")
    + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + [
        "Hello",
        "hello",
        "my",
        "dog",
        "is",
        "cute",
        "the",
        "The",
        "a",
        "and",
        "to",
        "of",
        "laughter",
        "laughs",
        "music",
        "He",
        "She",
        "said",
        "world",
        "World",
        "café",
        "Привет",
        "мир",
        "你",
        "好",
        "世",
        "界",
        "♪",
        "é",
        "##s",
        "##ing",
        "##ed",
        "##er",
        "##ly",
        "##é",
        "##a",
        "##e",
        "##o",
        "##n",
        "##t",
        "##r",
        "##i",
        "##l",
    ]
    + [f"##{c}" for c in "bcdfghjkmpquvwxyz"]
)
VOCAB = list(dict.fromkeys(VOCAB))  # one id per token
PRESETS_USED = ("v2/en_speaker_6", "en_speaker_1", "announcer", "v2/zh_speaker_9")


def suno_prompts_dir():
    references()
    import bark

    return os.path.join(os.path.dirname(bark.__file__), "assets", "prompts")


def write_hub_extras(path):
    """The tokenizer files and a speaker_embeddings/ tree, as on the Hub, next to a saved BarkModel."""
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    table = {"repo_or_path": str(path)}
    for name in PRESETS_USED:
        npz = np.load(os.path.join(suno_prompts_dir(), name + ".npz"))
        table[name] = {}
        for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
            rel = f"speaker_embeddings/{name}_{key}.npy"
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            np.save(os.path.join(path, rel), npz[key])
            table[name][key] = rel
    with open(os.path.join(path, "speaker_embeddings_path.json"), "w") as f:
        json.dump(table, f)


@pytest.fixture(scope="session")
def hf_snapshot(hf_bark, tmp_path_factory):
    """What BarkModel.save_pretrained writes (model.safetensors + config.json), plus tokenizer and presets."""
    path = tmp_path_factory.mktemp("hf_snapshot")
    hf_bark.save_pretrained(path)
    write_hub_extras(str(path))
    return str(path)


@pytest.fixture(scope="session")
def converted(hf_snapshot, tmp_path_factory):
    from nanobark.convert.folder import convert

    return convert(hf_snapshot, str(tmp_path_factory.mktemp("converted")))


def suno_copy(model, fine=False):
    """Suno's GPT / FineGPT holding the same weights as a nanobark model."""
    references()
    from bark.model import GPT as SunoGPT
    from bark.model import GPTConfig as SunoConfig
    from bark.model_fine import FineGPT as SunoFine
    from bark.model_fine import FineGPTConfig

    from nanobark.convert.gpt_keys import suno_model_args, suno_name

    c = model.config
    args = suno_model_args(c)
    ref = SunoFine(FineGPTConfig(**args)) if fine else SunoGPT(SunoConfig(**args))
    state = {suno_name(k): v for k, v in model.state_dict().items()}
    if fine:  # Suno stores the tied heads as well
        state.update({f"lm_heads.{i}.weight": model.wtes[i + 1].weight for i in range(7)})
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(".attn.bias") for k in missing)
    return ref.eval()
