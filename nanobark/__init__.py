"""nanobark: Suno's Bark text-to-audio model in minimal, readable PyTorch."""

from .bark import Bark
from .config import PRESETS, BarkConfig, CodecConfig, GPTConfig
from .layout import SAMPLE_RATE
from .longform import generate_long, split_text, stream
from .voices import load_voice, save_voice

__version__ = "0.1.0"
__all__ = [
    "Bark",
    "BarkConfig",
    "CodecConfig",
    "GPTConfig",
    "PRESETS",
    "SAMPLE_RATE",
    "generate_long",
    "load_voice",
    "save_voice",
    "split_text",
    "stream",
]
