"""Checkpoints of Bark, EnCodec, HuBERT and the semantic quantizer -> nanobark's safetensors layout.

The runtime owns the converter, key tables included: `Bark.from_pretrained` converts a Hub snapshot on first
use, and clone_voice the cloning weights, so an installed nanobark converts without a checkout. `nanobark
convert SRC OUT` converts a Bark folder by hand.

    folder.py       Bark: find the layout (transformers' or Suno's .pt files), read the files safely, write
                    the converted folder whole (atomic_folder)
    gpt_keys.py     the three GPTs' names: nanobark <- transformers, nanobark <- Suno
    codec_keys.py   EnCodec's decoder and encoder names (transformers', the encodec package's)
    hubert.py       voice cloning's HuBERT (transformers' or fairseq's) and quantizer -> a file each
    source.py       the source state dict, taken from key by key (weight norm folded), with one report of
                    what did not fit
"""

from .folder import convert, from_transformers, read_checkpoint
from .source import ConversionError

__all__ = ["ConversionError", "convert", "from_transformers", "read_checkpoint"]
