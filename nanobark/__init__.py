"""nanobark: Suno's Bark text-to-audio model in minimal, readable PyTorch."""
from .bark import Bark
from .config import PRESETS, BarkConfig, CodecConfig, GPTConfig
from .voices import load_voice, save_voice

SAMPLE_RATE = 24_000
__all__ = ["Bark", "BarkConfig", "CodecConfig", "GPTConfig", "PRESETS", "SAMPLE_RATE", "load_voice", "save_voice"]
