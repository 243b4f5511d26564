"""Random weights for checkpoints with the real layout (the tests and the benchmark scripts use them).

A freshly built model hides bugs: LayerNorms are ones and zeros, EnCodec's codebooks are all zero
and weight-norm gains equal |v|, so a broken decode or a dropped LayerNorm bias would go unseen.
"""

import argparse
import json
import os
import tempfile

import numpy as np
import torch

from nanobark.weights.convert.folder import convert
from weights_convert.references import suno_voice

# fmt: off
# GPT shapes: layers, heads, hidden. tiny is for tests and smoke runs; the others are the Hub models'
SHAPES = {"tiny": (2, 2, 32), "small": (12, 12, 768), "large": (24, 16, 1024)}
# a WordPiece vocab for the tests' texts: the special tokens at bert's ids, punctuation, letters, some words
# and scripts, and continuations; a random model has no use for the rest of bert's 119 547 entries
VOCAB = (
    ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~")
    + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + "Hello hello my dog is cute the The a and to of laughter laughs music He She said world World café "
      "Привет мир 你 好 世 界 ♪ é".split()
    + "##s ##ing ##ed ##er ##ly ##é ##a ##e ##o ##n ##t ##r ##i ##l".split()
    + [f"##{c}" for c in "bcdfghjkmpquvwxyz"]
)
VOCAB = list(dict.fromkeys(VOCAB))  # one id per token
# the presets the tests use: a v2 one, two v1 ones and one with Chinese text
PRESETS_USED = ("v2/en_speaker_6", "en_speaker_1", "announcer", "v2/zh_speaker_9")
# fmt: on


@torch.no_grad()
def randomize_(model, std=0.05):
    """Random values in every parameter and codebook of a transformers / encodec / Suno model, in place.

    Tied tensors stay tied (they are the same Parameter); LSTM weights keep their own init.
    """
    for name, p in model.named_parameters():
        if "parametrizations.weight.original0" in name or name.endswith("weight_g"):
            p.mul_(torch.empty_like(p).uniform_(0.5, 2.0))
        elif "norm" in name or ".ln_" in name:
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        elif "parametrizations" not in name and "weight_v" not in name and "lstm" not in name:
            p.normal_(0.0, std)
    for name, b in model.named_buffers():
        # transformers' "...codebook.embed", encodec's "..._codebook.embed"
        if name.endswith("codebook.embed"):
            b.normal_(0.0, 1.0)
    return model


def hf_config(size="tiny", **overrides):
    """A transformers BarkConfig with the real vocab sizes and EnCodec 24 kHz, GPTs of SHAPES[size];
    overrides go to all three GPT sub-configs."""
    from transformers import BarkConfig, EncodecConfig

    layers, heads, hidden = SHAPES[size]
    sub = dict(num_layers=layers, num_heads=heads, hidden_size=hidden, block_size=1024, bias=False, dropout=0.0)
    sub.update(overrides)
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=EncodecConfig().to_dict(),
    )


def random_bark(size="tiny", seed=1234):
    """A transformers BarkModel of hf_config(size) with randomize_'s weights, drawn after manual_seed(seed)."""
    from transformers import BarkModel

    torch.manual_seed(seed)
    return randomize_(BarkModel(hf_config(size))).eval()


def write_hub_extras(path, presets=PRESETS_USED):
    """VOCAB as vocab.txt and Suno's `presets` as a speaker_embeddings/ tree (with its index), as on the Hub,
    next to a saved BarkModel: Bark.from_pretrained(path) then knows the presets by name."""
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    index = {"repo_or_path": str(path)}
    for name in presets:
        index[name] = {}
        for key, array in suno_voice(name).items():
            index[name][key] = rel = f"speaker_embeddings/{name}_{key}.npy"
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            np.save(os.path.join(path, rel), array)
    with open(os.path.join(path, "speaker_embeddings_path.json"), "w") as f:
        json.dump(index, f)


def random_cloning_weights(folder, seed=0):
    """facebook/hubert-base-ls960 and GitMylo/bark-voice-cloning's default quantizer, random, in the layouts users
    download (a version-0 quantizer saved as its authors save it: a state dict), drawn after manual_seed(seed)
    -> (the HuBERT snapshot folder, the folder holding the quantizer file)."""
    from transformers import HubertConfig, HubertModel

    hubert, quantizer = os.path.join(folder, "hubert-base-ls960"), os.path.join(folder, "quantizer")
    torch.manual_seed(seed)
    HubertModel(HubertConfig()).save_pretrained(hubert)
    lstm, fc = torch.nn.LSTM(768, 1024, 2, batch_first=True), torch.nn.Linear(1024, 10_000)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state.update({"fc.weight": fc.weight.detach() * 30, "fc.bias": fc.bias.detach()})  # ids that vary
    os.makedirs(quantizer, exist_ok=True)
    torch.save(state, os.path.join(quantizer, "quantifier_hubert_base_ls960_14.pth"))
    return hubert, quantizer


def main(argv=None):
    """Random weights with the real layouts, for offline smoke runs (they speak noise, not speech):

    python -m weights_convert.random_init bark OUT [--size tiny]   a converted model folder (nanobark's layout)
    python -m weights_convert.random_init cloning OUT              OUT/hubert-base-ls960/ and OUT/quantizer/*.pth
    """
    p = argparse.ArgumentParser(prog="python -m weights_convert.random_init", description=main.__doc__)
    p.add_argument("what", choices=("bark", "cloning"))
    p.add_argument("out")
    p.add_argument("--size", choices=SHAPES, default="tiny", help="the three GPTs' shapes (bark)")
    args = p.parse_args(argv)
    if args.what == "cloning":
        print("\n".join(random_cloning_weights(args.out)))
        return
    with tempfile.TemporaryDirectory() as snapshot:
        random_bark(args.size).save_pretrained(snapshot)
        write_hub_extras(snapshot)
        print(convert(snapshot, args.out))


if __name__ == "__main__":
    main()
