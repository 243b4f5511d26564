"""Fuzzed input: random Unicode through normalize_text, the tokenizer, the text prompt and the whole pipeline,
and random safetensors headers through the checkpoint reader.

Only the documented errors may come out (empty text, text without tokens, a semantic stage that stops at once,
a CheckpointError), the tokenizer must give the ids of the slow BertTokenizer Suno runs, and the audio must be
well formed.
"""

import json
import os
import string
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nanobark.tokenizer import TextError, Tokenizer, normalize_text, text_prompt
from nanobark.weights.checkpoint import CheckpointError, read_safetensors

try:  # transformers 5 renamed the pure-Python tokenizer; in 4.x BertTokenizer is the slow one
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as SlowBertTokenizer
except ImportError:
    from transformers import BertTokenizer as SlowBertTokenizer

ANY_CHAR = st.characters(exclude_categories=())  # every code point: unassigned, private use, lone surrogates
HOSTILE = st.sampled_from(
    list(
        "\x00\x07\x1b\x7f\x85\xad\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2066\u2069\ufeff\ufffd"  # controls, bidi
        "\u0301\u0327\u20dd\u0591\u05d0\u05e9\u0627\u0644\u06cc\u0915\u094d\u0e01\u0e31"  # marks, RTL and Indic
        "\t\n\r \u00a0\u3000\u2028\u2029\U0002b820你好"
    )  # whitespace of all kinds, CJK
    + ["👩‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "[MASK]", "[UNK]", "[laughter]", "♪", "Hello", "dog", "café", "Привет"]
)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.lists(st.one_of(HOSTILE, ANY_CHAR), max_size=30).map("".join),
    st.text(st.sampled_from(string.punctuation + "¿¡«»…、。「」"), min_size=1, max_size=40),  # punctuation only
    # very long: a phrase repeated up to 400 times
    st.builds(lambda s, n: s * n, st.lists(HOSTILE, min_size=1, max_size=6).map(" ".join), st.integers(20, 400)),
)


@pytest.fixture(scope="module")
def tok(converted):
    return Tokenizer.from_dir(converted)


@pytest.fixture(scope="module")
def slow(converted):
    return SlowBertTokenizer(os.path.join(converted, "vocab.txt"), do_lower_case=False)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_normalize_text_collapses_whitespace_or_says_empty(text):
    if text.split():
        assert normalize_text(text) == " ".join(text.split())
    else:
        with pytest.raises(TextError, match="text is empty"):
            normalize_text(text)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_tokens_match_slow_bert_and_the_prompt_is_well_formed(tok, slow, text):
    ids = tok.encode(text)
    assert ids == slow.encode(text, add_special_tokens=False)
    assert all(0 <= i < len(slow.vocab) for i in ids)
    if not ids:
        with pytest.raises(TextError, match="text produced no tokens"):
            text_prompt(ids)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompt = text_prompt(ids)
    n = min(len(ids), 256)
    assert prompt.shape == (256,) and prompt.dtype == np.int64
    assert prompt[:n].tolist() == [i + 10_048 for i in ids[:n]] and (prompt[n:] == 129_595).all()
    assert len(caught) == (len(ids) > 256)


@pytest.mark.slow
@settings(max_examples=2, deadline=None)  # each example runs all four networks
@example("\u202eevil\u202c ﷽ 👩‍👩‍👧‍👦 a\u0301\u0301\u0301 \udcff")
@example("dog " * 300)  # past the 256 text tokens the semantic model reads
@example("\x00\u200b\ufeff\U000f0000")  # no tokens
@given(TEXT)
def test_whole_pipeline_gives_audio_or_a_documented_error(bark, text):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the too-long warning
            full, audio = bark.generate(text, seed=0, max_duration=0.05, output_full=True)
    except TextError as e:
        empty = not text.split()
        assert ("text is empty" if empty else "text produced no tokens") in str(e)
        assert empty or not bark.tokenizer.encode(text)
        return
    except RuntimeError as e:
        assert "semantic model stopped before producing any token" in str(e)
        return
    semantic, coarse, fine = full["semantic_prompt"], full["coarse_prompt"], full["fine_prompt"]
    assert len(semantic) >= 1 and coarse.shape == (2, fine.shape[1]) and fine.shape[0] == 8
    assert (fine[:2] == coarse).all()
    assert audio.dtype == np.float32 and audio.shape == (320 * fine.shape[1],) and np.isfinite(audio).all()


HEADER_ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.one_of(
            st.sampled_from(["F32", "F16", "I64", "BOOL", "F4", "f32"]), st.integers(), st.lists(st.text())
        ),
        "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=3), st.text(max_size=2), st.none()),
        "data_offsets": st.one_of(
            st.lists(st.integers(-4, 300), min_size=2, max_size=2), st.lists(st.integers()), st.booleans(), st.none()
        ),
    }
)


@pytest.fixture(scope="module")
def st_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzed") / "x.safetensors"


@settings(max_examples=300, deadline=None)
@example({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), 0)  # a valid file loads
@given(
    st.dictionaries(st.text(min_size=1, max_size=4), HEADER_ENTRY, max_size=4),
    st.binary(max_size=300),
    st.sampled_from([0, 0, 0, -1, 1, 1000]),
)  # how far the stored header length is off
def test_any_safetensors_header_loads_or_is_a_checkpoint_error(st_file, header, body, length_error):
    raw = json.dumps(header).encode()
    st_file.write_bytes((len(raw) + length_error).to_bytes(8, "little", signed=True) + raw + body)
    try:
        state = read_safetensors(st_file)
    except CheckpointError as e:
        assert str(st_file) in str(e)
        return
    assert {k: list(t.shape) for k, t in state.items()} == {k: v["shape"] for k, v in header.items()}
