"""The semantic quantizer: HuBERT features -> Bark's semantic ids, one per 20 ms frame.

Suno never released how Bark's semantic ids are made from audio. The community's answer (gitmylo's
"CustomTokenizer", MIT) is a small network trained on pairs of Bark-generated audio and the ids that made it:

    features (B, T, 768) -> 2-layer LSTM, forward in time from a zero state        (B, T, 1024)
    [-> Linear 1024 -> 4096, no activation: version 1 only]
    -> Linear -> logits (B, T, 10000) -> argmax -> ids (B, T)

The original runs one clip at a time, as a 2-D (T, 768) input, and takes the argmax of a LogSoftmax over
the 10,000 ids: the same id as the logits' argmax. Its files are plain state dicts with no config, so the
version and the sizes are read from the tensors' shapes (quantizer_config).

State-dict names are the community files' own (quantizer.safetensors; shapes for version 0 / 1):
    lstm.weight_ih_l0                     (4096, 768)       the gates i, f, g, o stacked
    lstm.weight_hh_l0, lstm.weight_{ih,hh}_l1                (4096, 1024)
    lstm.bias_{ih,hh}_l{0,1}              (4096,)
    intermediate.{weight, bias}           (4096, 1024)      version 1 only
    fc.{weight, bias}                     (10000, 1024) in version 0, (10000, 4096) in version 1
"""

import re

import torch.nn as nn

from .config import QuantizerConfig


def quantizer_config(shapes):
    """The QuantizerConfig that tensors of these shapes ({name: shape}) make. A size whose tensor is missing
    or malformed keeps its default, so that the model is still built and the shape check names the tensor."""
    d = QuantizerConfig()

    def shape(name):
        s = tuple(shapes.get(name) or ())
        return s if len(s) == 2 and min(s) > 0 else None

    ih, inter, fc = shape("lstm.weight_ih_l0"), shape("intermediate.weight"), shape("fc.weight")
    n_layer = sum(re.fullmatch(r"lstm\.weight_ih_l\d+", k) is not None for k in shapes)
    return QuantizerConfig(
        n_input=ih[1] if ih else d.n_input,
        n_hidden=max(1, ih[0] // 4) if ih else d.n_hidden,  # (4 * hidden, input): four gates
        n_layer=n_layer or d.n_layer,
        n_intermediate=inter[0] if inter else 0,
        vocab_size=fc[0] if fc else d.vocab_size,
    )


class SemanticQuantizer(nn.Module):
    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.n_input, cfg.n_hidden, cfg.n_layer, batch_first=True)
        self.intermediate = nn.Linear(cfg.n_hidden, cfg.n_intermediate) if cfg.n_intermediate else None
        self.fc = nn.Linear(cfg.n_intermediate or cfg.n_hidden, cfg.vocab_size)

    def logits(self, features):
        """features (B, T, n_input) -> logits (B, T, vocab_size)."""
        h = self.lstm(features)[0]  # (B, T, n_hidden)
        if self.intermediate is not None:
            h = self.intermediate(h)  # version 1: a wider layer, straight into the head
        return self.fc(h)

    def forward(self, features):
        """features (B, T, 768) from Hubert -> semantic ids (B, T) int64 in [0, vocab_size)."""
        return self.logits(features).argmax(dim=-1)
