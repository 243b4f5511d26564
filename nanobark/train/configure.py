"""A training script's settings: its defaults, then a config file, then --key=value overrides.

nanoGPT's "poor man's configurator", as nanobark's own code: a config file is a Python file of plain
assignments (`stage = "coarse"`), run, its names read back; `--key=value` is read as a Python literal
(`--lr=3e-5`, `--decay_lr=False`), or taken as a string when it is not one (`--stage=fine`). Every name
must be one of the defaults, with the default's type (an int where a float is expected is fine).
"""

import ast
import types

from ..files import MB, read_bounded


class ConfigError(ValueError):
    """A setting that is unknown, or of the wrong type."""


def configure(defaults, argv):
    """defaults {name: value} and the command line's arguments -> the settings {name: value}."""
    settings = dict(defaults)

    def put(key, value, where):
        if key not in defaults:
            raise ConfigError(f"{where}: no setting named {key!r}; the settings are {', '.join(defaults)}")
        want = type(defaults[key])
        if want is float and type(value) is int:
            value = float(value)
        if type(value) is not want:
            raise ConfigError(f"{where}: {key} takes a {want.__name__}, got {value!r}")
        settings[key] = value

    for arg in argv:
        if arg.startswith("--"):
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise ConfigError(f"{arg}: write settings as --key=value")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text
            put(key, value, arg)
        else:
            names = {}
            exec(compile(read_bounded(arg, MB, "the config file"), arg, "exec"), {}, names)
            for key, value in names.items():
                if not key.startswith("_") and not isinstance(value, types.ModuleType):
                    put(key, value, arg)
    return settings
