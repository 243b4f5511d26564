"""Text -> the 256 ids the semantic model reads: Suno's whitespace cleanup, mBERT WordPiece, offset and pad.

Suno tokenizes with transformers' slow Python `BertTokenizer("bert-base-multilingual-cased")`. The same
pipeline is rebuilt here on the `tokenizers` library, step for step, so the ids match it exactly.
"""

import os
import re
import unicodedata
import warnings

import numpy as np
from tokenizers import Tokenizer as _Backend
from tokenizers import models, normalizers, pre_tokenizers

from .files import MAX_SIDE_FILE, read_bounded, read_json
from .layout import TEXT_LENGTH, TEXT_OFFSET, TEXT_PAD

MAX_TEXT_CHARS = 1_000_000  # a long book, and ~20 hours of speech; more is refused before any work
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MISSED_CJK = re.compile("([\U0002b820-\U0002b91f])")


class TextError(ValueError):
    """Text that cannot be turned into a prompt."""


class TokenizerFileNotFoundError(FileNotFoundError):
    """No vocabulary file where one was expected."""


def normalize_text(text: str) -> str:
    """Collapse every run of (Unicode) whitespace to one space and trim, as Suno does before tokenizing."""
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}; pass one string per prompt")
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(
            f"text is {len(text):,} characters, over the {MAX_TEXT_CHARS:,} nanobark takes at once; split it "
            "and speak the parts in turn"
        )
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise TextError("text is empty (or only whitespace); pass something to say")
    return text


def match_slow_cleanup(text: str) -> str:
    """The steps of the slow tokenizer's cleanup that the Rust normalizer gets wrong, done first, in Python.

    Control characters are Unicode category C* except tab and newlines, as Python's unicodedata has them:
    the Rust normalizer keeps unassigned (Cn) and private-use (Co) code points, and cannot take lone
    surrogates (Cs) at all, such as undecodable bytes in a command line. And CJK ideographs of Extension E
    from U+2B820 are spaced out (the Rust table starts that block at U+2B920).
    """
    text = "".join(c for c in text if c in "\t\n\r" or not unicodedata.category(c).startswith("C"))
    return _MISSED_CJK.sub(r" \1 ", text)


def _read_vocab_txt(path):
    # one token per line, id = line number; like transformers' load_vocab, a repeated token keeps its last id
    text = read_bounded(path, MAX_SIDE_FILE, "the vocabulary").decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as a text-mode file reads lines
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    return {line: i for i, line in enumerate(lines)}


def _read_tokenizer_json(path):
    # only the vocabulary is taken: the pipeline is fixed below, because the Hub's tokenizer.json
    # (converted for the fast tokenizer) lacks the NFC step of the slow tokenizer Suno ran
    model = read_json(path, "the tokenizer").get("model", {})
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise TextError(f"{path} is not a WordPiece (BERT) tokenizer; use the bert-base-multilingual-cased files")
    return model["vocab"]


class Tokenizer:
    """BERT WordPiece, cased, as transformers' slow `BertTokenizer(vocab, do_lower_case=False)` does it."""

    def __init__(self, vocab: dict):
        if "[UNK]" not in vocab:
            raise TextError("the vocabulary has no [UNK] token; is this a BERT vocab.txt / tokenizer.json?")
        tok = _Backend(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        # slow BasicTokenizer order: drop control chars and map whitespace to " ", space out CJK ideographs,
        # then NFC; no lowercasing and, since it is cased, no accent stripping
        tok.normalizer = normalizers.Sequence(
            [
                normalizers.BertNormalizer(
                    clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
                ),
                normalizers.NFC(),
            ]
        )
        # split on whitespace and on each punctuation char
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # the slow tokenizer never splits its special tokens when they appear in the text
        tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
        self._tok = tok

    @classmethod
    def from_vocab(cls, vocab_file) -> "Tokenizer":
        if not os.path.isfile(vocab_file):
            raise TokenizerFileNotFoundError(
                f"vocabulary file {vocab_file} not found; pass the path of a BERT vocab.txt"
            )
        return cls(_read_vocab_txt(vocab_file))

    @classmethod
    def from_dir(cls, path) -> "Tokenizer":
        """Read `tokenizer.json` from a model directory, else `vocab.txt`."""
        json_file, txt_file = os.path.join(path, "tokenizer.json"), os.path.join(path, "vocab.txt")
        if os.path.isfile(json_file):
            return cls(_read_tokenizer_json(json_file))
        if os.path.isfile(txt_file):
            return cls(_read_vocab_txt(txt_file))
        raise TokenizerFileNotFoundError(
            f"no tokenizer.json or vocab.txt in {path}; download the model's tokenizer files "
            "(e.g. from suno/bark-small) or use Tokenizer.from_vocab(path_to_vocab_txt)"
        )

    def encode(self, text: str) -> list:
        """WordPiece ids of `text`, without [CLS]/[SEP]."""
        if not isinstance(text, str):
            raise TextError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(match_slow_cleanup(text), add_special_tokens=False).ids

    def text_ids(self, text: str) -> list:
        """The ids generation reads for `text`: whitespace normalized as Suno does (normalize_text), then encoded.
        The one owner of that rule: prompts (Bark.encode_text), a text's token count (longform.count_tokens: segments,
        manifests) and training clips (prepare) call it."""
        return self.encode(normalize_text(text))


def text_prompt(ids, offset=TEXT_OFFSET, length=TEXT_LENGTH, pad=TEXT_PAD) -> np.ndarray:
    """The semantic model's text block: ids shifted past the semantic vocab, first `length` kept, right-padded."""
    ids = np.asarray(ids, dtype=np.int64) + offset
    if ids.ndim != 1:
        raise TextError(f"expected a flat list of token ids, got shape {ids.shape}; prompt one text at a time")
    if len(ids) == 0:
        raise TextError("text produced no tokens (only control or zero-width characters?); pass some words")
    if len(ids) > length:
        dropped = len(ids) - length
        warnings.warn(
            f"text is too long: {len(ids)} tokens, only the first {length} are used ({dropped} tokens "
            f"= {100 * dropped / len(ids):.1f}% dropped); split it or use generate_long",
            stacklevel=2,
        )
        ids = ids[:length]
    return np.pad(ids, (0, length - len(ids)), constant_values=pad)
