"""Tokenizer parity with the slow transformers BertTokenizer Suno runs, and the 256-id text prompt layout."""

import json
import random
import warnings

import numpy as np
import pytest

from helpers import references
from nanobark.tokenizer import TextError, Tokenizer, TokenizerFileNotFoundError, normalize_text, text_prompt

VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("!\"#'(),-.:;?[]…¿¡«»。，、")
    + [
        "hello",
        "Hello",
        "world",
        "the",
        "a",
        "##a",
        "laugh",
        "##ter",
        "##s",
        "##ing",
        "un",
        "##aff",
        "##able",
        "sing",
        "music",
        "♪",
        "##hello",
        "café",
        "naïve",
        "über",
        "Straße",
        "caf",
        "##é",
        "e",
        "##e",
        "Qu",
        "Sí",
        "hola",
    ]
    + [
        "中",
        "文",
        "字",
        "日",
        "本",
        "語",
        "你",
        "好",
        "こ",
        "##ん",
        "##に",
        "##ち",
        "##は",
        "안",
        "##녕",
        "при",
        "##вет",
        "नमस्ते",
    ]
)

TEXTS = [
    "Hello world!",
    "hello, the world.",
    "the laughing singers",
    "café naïve über Straße",
    "cafe\u0301 nai\u0308ve",  # composed and decomposed accents
    "中文字 日本語你好!",
    "こんにちは 안녕 привет नमस्ते",
    "[laughter] hello [music] ♪ sing ♪",
    "♪hello♪ ♪hello",
    "hello 😀 world 👍🏽",
    "ʬ ⱥ \U0001f9ea xyz",
    "hello\tworld\nthe\u00a0a\u3000hello\u2028world  \r\n",
    "hel\x00lo \ufffd world \u200b the\x1f",
    "a" * 100,
    "a" * 101,
    "hello " + "a" * 101 + " world",
    "hello[MASK]world [UNK] [CLS]x [SEP]",
    "¿Qué? ¡Sí! «hola» 。，、…",
    "\uf900\uf901 字",
    "unaffable unaffables",
    "",
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def slow(vocab_file):
    references()
    try:  # transformers 5 renamed the pure-Python tokenizer; in 4.x BertTokenizer is the slow one
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as SlowBertTokenizer
    except ImportError:
        from transformers import BertTokenizer as SlowBertTokenizer
    return SlowBertTokenizer(str(vocab_file), do_lower_case=False)


def fast_json(vocab_file, path):
    """Save transformers' fast BertTokenizer as the tokenizer.json a Hub snapshot has."""
    references()
    from transformers import BertTokenizerFast

    BertTokenizerFast(str(vocab_file), do_lower_case=False).backend_tokenizer.save(str(path))


def slow_ids(slow, text):
    return slow.encode(text, add_special_tokens=False)


def test_encode_matches_slow_bert(vocab_file, slow):
    tok = Tokenizer.from_vocab(vocab_file)
    for text in TEXTS:
        assert tok.encode(text) == slow_ids(slow, text), repr(text)
        if text.strip():  # and after Suno's whitespace cleanup, which is how the pipeline calls it
            clean = normalize_text(text)
            assert tok.encode(clean) == slow_ids(slow, clean), repr(clean)


def test_wordpiece_is_exercised(vocab_file, slow):
    # guard against a vocab so thin that every case is [UNK]: splits and limits really happen
    ids = {t: i for i, t in enumerate(VOCAB)}
    tok = Tokenizer.from_vocab(vocab_file)
    assert slow.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.encode("a" * 100) == [ids["a"]] + [ids["##a"]] * 99
    assert tok.encode("a" * 101) == [ids["[UNK]"]]
    assert tok.encode("cafe\u0301") == [ids["café"]]  # NFC, as the slow tokenizer does


def test_random_strings_match_slow_bert(vocab_file, slow):
    tok = Tokenizer.from_vocab(vocab_file)
    alphabet = sorted(set("".join(VOCAB[5:]))) + list(" \t\n\u00a0\u3000\u2028\x00\u200b\u0301😀\uf900")
    rng = random.Random(0)
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert tok.encode(text) == slow_ids(slow, text), repr(text)


def test_tokenizer_json_gives_same_ids(tmp_path, vocab_file, slow):
    # the Hub ships a fast-tokenizer tokenizer.json; it must tokenize like the slow tokenizer too
    fast_json(vocab_file, tmp_path / "tokenizer.json")
    tok = Tokenizer.from_dir(tmp_path)
    for text in TEXTS:
        assert tok.encode(text) == slow_ids(slow, text), repr(text)


def test_from_dir_prefers_tokenizer_json(tmp_path, vocab_file):
    fast_json(vocab_file, tmp_path / "tokenizer.json")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    assert Tokenizer.from_dir(tmp_path).encode("hello") == [VOCAB.index("hello")]


def test_from_dir_reads_vocab_txt(tmp_path, vocab_file, slow):
    (tmp_path / "vocab.txt").write_bytes(vocab_file.read_bytes())
    assert Tokenizer.from_dir(tmp_path).encode(TEXTS[0]) == slow_ids(slow, TEXTS[0])


def test_missing_or_wrong_files(tmp_path):
    with pytest.raises(TokenizerFileNotFoundError, match="tokenizer.json or vocab.txt"):
        Tokenizer.from_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        Tokenizer.from_vocab(tmp_path / "vocab.txt")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(TextError, match="WordPiece"):
        Tokenizer.from_dir(tmp_path)
    with pytest.raises(TextError, match=r"\[UNK\]"):
        Tokenizer({"hello": 0})


def test_normalize_text_matches_suno():
    references()
    from bark.generation import _normalize_whitespace

    for text in ["  hello \t\n world\u00a0\u3000 ", "a\r\nb", "one", " [laughter]  ok\x0b\x0c"]:
        assert normalize_text(text) == _normalize_whitespace(text)
    assert normalize_text(" hi\u00a0\u3000 there\n") == "hi there"


def test_text_ids_are_sunos_normalize_then_tokenize(vocab_file, slow):
    """text_ids, the one owner of text -> ids, is what Suno's generate_text_semantic does: its whitespace cleanup,
    then the slow BERT tokenizer."""
    references()
    from bark.generation import _normalize_whitespace

    tok = Tokenizer.from_vocab(vocab_file)
    for text in [t for t in TEXTS if t.strip()] + ["  hello \t\n world\u00a0\u3000 ", " [laughter]  ok\x0b\x0c"]:
        assert tok.text_ids(text) == slow_ids(slow, _normalize_whitespace(text)), repr(text)
    with pytest.raises(TextError, match="text is empty"):
        tok.text_ids(" \u3000\n")


@pytest.mark.parametrize("bad", ["", "   ", "\n\t\u3000"])
def test_normalize_text_rejects_empty(bad):
    with pytest.raises(TextError, match="text is empty"):
        normalize_text(bad)


@pytest.mark.parametrize("bad", [None, 5, b"hello", ["hello"]])
def test_normalize_text_rejects_non_str(bad):
    with pytest.raises(TextError, match="must be a str"):
        normalize_text(bad)


def test_text_prompt_layout():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = text_prompt([0, 1, 119_546])
        full = text_prompt(list(range(256)))
    assert out.dtype == np.int64 and out.shape == (256,)
    assert out[:3].tolist() == [10_048, 10_049, 129_594]
    assert (out[3:] == 129_595).all()
    assert full.tolist() == list(range(10_048, 10_048 + 256))


def test_text_prompt_truncates_with_warning():
    with pytest.warns(UserWarning, match="300 tokens") as record:
        out = text_prompt(list(range(300)))
    message = str(record[0].message)
    assert "44 tokens" in message and "14.7%" in message and "generate_long" in message
    assert out.tolist() == list(range(10_048, 10_048 + 256))


def test_text_prompt_rejects_no_tokens_or_a_batch():
    with pytest.raises(TextError, match="no tokens"):
        text_prompt([])
    with pytest.raises(TextError, match="flat list"):
        text_prompt([[1, 2], [3, 4]])


def test_encode_matches_transformers_bert_tokenizer(vocab_file):
    """transformers 5's own `BertTokenizer` (now backed by `tokenizers`) agrees on every listed category.

    It differs from the slow tokenizer Suno ran only where the slow one applies NFC (decomposed
    accents) or drops unassigned / private-use characters; nanobark follows the slow one there.
    """
    references()
    from transformers import BertTokenizer

    fast = BertTokenizer(str(vocab_file), do_lower_case=False)
    tok = Tokenizer.from_vocab(vocab_file)
    cases = [
        "Hello world!",
        "café naïve über Straße",
        "中文字 日本語你好!",
        "こんにちは 안녕 привет नमस्ते",
        "[laughter] hello [music] ♪ sing ♪",
        "hello 😀 world 👍🏽",
        "ʬ ⱥ \U0001f9ea xyz",
        "¿Qué? ¡Sí! «hola» 。，、…",
        "hello " + "a" * 101 + " world",
        "unaffable unaffables",
    ]
    for text in cases:
        assert tok.encode(text) == fast.encode(text, add_special_tokens=False), repr(text)
