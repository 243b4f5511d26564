"""nanobark: Suno's Bark text-to-audio model in minimal, readable PyTorch.

The names below are imported on first use (PEP 562), so that `import nanobark` is instant and the
`nanobark` command can answer --help, or a Ctrl-C, before torch has loaded.
"""

__version__ = "0.1.0"
_WHERE = {  # public name -> the module that defines it (the one list: readers and tools start here)
    "Bark": "bark",
    "clone_voice": "cloning",
    "BarkConfig": "config",
    "CodecConfig": "config",
    "GPTConfig": "config",
    "PRESETS": "config",
    "SAMPLE_RATE": "layout",
    "Settings": "settings",
    "generate_long": "longform",
    "load_voice": "voices",
    "save_voice": "voices",
    "split_text": "longform",
    "stream": "longform",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'nanobark' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # once
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
