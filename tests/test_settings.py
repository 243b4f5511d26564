"""Settings: each sampling default and check once, the same names in the API, the command and the manifest; and
the command's parsers answer --help and usage errors without torch."""

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError, asdict, fields, replace

import pytest

from nanobark.settings import (
    LONG_FORM,
    Settings,
    check_max_duration,
    check_min_eos_p,
    check_temperature,
    check_top_k,
    check_top_p,
    defaults,
)


@pytest.mark.parametrize(
    "call, said",
    [
        (lambda: check_temperature(0), "temperature must be > 0, got 0"),
        (lambda: check_temperature(None), "temperature must be > 0"),
        (lambda: check_temperature(0.0, allow_none=True), r"\(use None for argmax\)"),
        (lambda: check_temperature(float("inf")), "temperature must be a finite number or None"),
        (lambda: check_top_k(0), "top_k must be an integer >= 1 or None, got 0"),
        (lambda: check_top_k(2.5), "top_k must be an integer >= 1"),
        (lambda: check_top_k(True), "top_k must be a finite number"),
        (lambda: check_top_p(0), r"top_p must be in \(0, 1\]"),
        (lambda: check_min_eos_p(-0.1), r"min_eos_p must be in \[0, 1\]"),
        (lambda: check_max_duration(0), "max_duration must be > 0 seconds"),
        (lambda: check_top_k(0, name="--top-k"), "^--top-k must be an integer >= 1, got 0$"),  # a flag: no None
        (lambda: Settings(top_p=2), "top_p"),
        (lambda: Settings(fine_temp=0.0), r"\(use None for argmax\)"),
        (lambda: replace(Settings(), waveform_temp=-1), "temperature must be > 0, got -1"),
    ],
)
def test_bad_settings_name_the_setting_and_the_bound(call, said):
    with pytest.raises(ValueError, match=said):
        call()


def test_good_settings_pass_through():
    assert check_temperature(None, allow_none=True) is None and check_top_k(3.0) == 3 and check_top_p(1.0) == 1.0
    assert check_min_eos_p(None) is None and check_max_duration(None) is None
    assert Settings(top_k=40.0, fine_temp=None).top_k == 40  # an integral float is the int


def test_the_defaults_are_suno_s_and_long_form_changes_only_min_eos_p():
    assert asdict(Settings()) == dict(
        text_temp=0.7, waveform_temp=0.7, fine_temp=0.5, top_k=None, top_p=None, min_eos_p=0.2, max_duration=None
    )
    assert LONG_FORM == replace(Settings(), min_eos_p=0.05) and defaults(True) is LONG_FORM
    assert defaults(False) == Settings()
    with pytest.raises(FrozenInstanceError):
        Settings().top_k = 3
    with pytest.raises(TypeError):  # the old name is gone: one name per setting
        replace(Settings(), max_duration_s=1.0)


def test_the_command_s_flags_are_the_settings_fields():
    from nanobark.cli.parser import given_settings
    from nanobark.cli.speak import speak_parser

    p = speak_parser()
    flags = {a.dest: a.option_strings for a in p._actions}
    for f in fields(Settings):
        assert flags[f.name] == ["--" + f.name.replace("_", "-")]
    args = p.parse_args(["Hi", "--top-k", "3", "--max-duration", "1.5"])
    assert replace(Settings(), **given_settings(args)) == Settings(top_k=3, max_duration=1.5)
    assert replace(LONG_FORM, **given_settings(args)).min_eos_p == 0.05  # not given: the form's own
    assert given_settings(p.parse_args(["Hi", "--min-eos-p", "0.1"]))["min_eos_p"] == 0.1


def test_a_corpus_item_s_settings_are_the_form_s_then_the_job_s_then_the_row_s():
    from nanobark.cli.corpus import item_settings
    from nanobark.cli.manifest import Row

    row = Row(1, "a", "Hi", None, None, None, False, {"top_k": 5})
    short = item_settings(row, {"text_temp": 0.6}, long=False)
    assert short == {**asdict(Settings(text_temp=0.6, top_k=5)), "long": False}
    assert item_settings(row, {}, long=True)["min_eos_p"] == 0.05
    assert item_settings(row, {"min_eos_p": 0.1}, long=True)["min_eos_p"] == 0.1
    row = row._replace(settings={"top_k": 5, "min_eos_p": 0.3})
    assert item_settings(row, {"min_eos_p": 0.1}, long=True)["min_eos_p"] == 0.3


NO_TORCH = """
import sys
import nanobark.cli as cli

for argv in {argvs!r}:
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == (2 if argv[-1] == "0" else 0), (argv, e.code)
    assert "torch" not in sys.modules, argv
"""


def test_help_version_and_usage_errors_answer_without_torch():
    """torch takes a second or more to load: the parsers never need it, only the commands' work does."""
    argvs = [
        ["--help"],
        ["--version"],
        *([c, "--help"] for c in ("voices", "clone", "convert", "synthesize", "prepare")),
        ["Hi", "--top-k", "0"],
        ["synthesize", "x.jsonl", "--out-dir", "o", "--batch-size", "0"],
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [sys.executable, "-c", NO_TORCH.format(argvs=argvs)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
        cwd=root,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("error:") == 2 and "--top-k must be an integer >= 1" in r.stderr


def test_the_largest_seed_is_taken_and_a_batch_s_last_seed_must_fit_too():
    from nanobark.cli.speak import speak_parser
    from nanobark.cli.synthesize import synthesize_parser
    from nanobark.settings import MAX_SEED, check_seed

    assert MAX_SEED == 2**63 - 1 and check_seed(MAX_SEED) == MAX_SEED
    assert check_seed(MAX_SEED - 2, n=3) == MAX_SEED - 2  # items 0, 1, 2: the last gets MAX_SEED
    for seed, n in ((MAX_SEED + 1, 1), (MAX_SEED - 1, 3), (MAX_SEED, 2)):
        with pytest.raises(ValueError, match="must be an integer from 0 to 2\\*\\*63 - 1"):
            check_seed(seed, n=n)
    with pytest.raises(ValueError, match=r"item i of 3 uses seed \+ i"):
        check_seed(MAX_SEED - 1, n=3)
    assert speak_parser().parse_args(["Hi", "--seed", str(MAX_SEED)]).seed == MAX_SEED
    argv = ["x.jsonl", "--out-dir", "o", "--seed", str(MAX_SEED)]
    assert synthesize_parser().parse_args(argv).seed == MAX_SEED
    with pytest.raises(SystemExit):
        speak_parser().parse_args(["Hi", "--seed", str(MAX_SEED + 1)])
