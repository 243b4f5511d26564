"""Bark checkpoints (transformers' Hub layout, or Suno's original .pt files) -> nanobark's safetensors layout.

The runtime owns the converter, key tables included: `Bark.from_pretrained` converts a Hub snapshot on first
use, so an installed nanobark must be able to convert without a checkout. weights_convert/convert.py (in a
checkout) is only a command-line entry to `convert`.

    folder.py       find the layout, read the files safely, write the converted folder
    gpt_keys.py     the three GPTs' names: nanobark <- transformers, nanobark <- Suno
    codec_keys.py   EnCodec's decoder names, weight norm folded
    source.py       the source state dict, taken from key by key, with one report of what did not fit
"""

from .folder import convert, from_transformers, read_checkpoint
from .source import ConversionError

__all__ = ["ConversionError", "convert", "from_transformers", "read_checkpoint"]
