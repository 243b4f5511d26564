"""Long-form speech: cut text into segments that each fit one generation, speak them, join the audio.

One Bark generation reads at most 256 text tokens and speaks at most ~15 s (768 semantic tokens), and
quality drops well before that. So long text is cut at sentence ends first, then at clause ends, then
between words (between characters in CJK text, which has no spaces), into segments of at most
`max_tokens` tokenizer tokens; consecutive pieces are packed greedily while they fit. Bracketed cues
such as "[laughter]" are never cut, nor are "♪ ... ♪" lyrics that fit in one segment.

    split_text("Hello. How are you?", bark.tokenizer)  # -> ["Hello. How are you?"] (it fits: one segment)
    audio = generate_long(bark, story, voice="v2/en_speaker_6", seed=1)

Long form sits above `Bark`: it calls `bark.generate` (batched) and `bark.load_voice`, and Bark knows nothing of it.

Segments are stripped substrings of the normalized text, in order; between two of them the text had one
space or nothing, and `join_segments` puts that space back (see there), so nothing is lost or doubled.
"""

import numbers
import re
from dataclasses import replace
from typing import NamedTuple

import numpy as np

# TEXT_LENGTH: what one generation reads; a segment that cannot be cut below it is an error
from .layout import TEXT_LENGTH
from .progress import counter
from .settings import LONG_FORM, check_seed, item_seed
from .tokenizer import TextError, normalize_text
from .voices import VoiceError, validate_voice

MAX_TOKENS = 50  # default budget: ~35 English words, ~10-13 s of speech, safely under Bark's ~15 s
CONTINUITY = ("voice", "previous")
SILENCE = 0.25  # seconds between segments, by default
MAX_SILENCE = 60.0  # seconds between segments

SENTENCE_ENDS = ".!?…‼⁇⁈⁉。！？｡．؟۔।॥።"
CLAUSE_ENDS = ",;:،؛，、；：､"
CLOSERS = "\"'”’»›)]}」』）］｝〉》】〕"  # may follow an end mark: the cut goes after them
OPENERS = "“‘«‹([{「『（［｛〈《【〔"  # a CJK cut never leaves one at the end of a segment
ABBREVIATIONS = set("mr mrs ms mx dr prof rev sr jr st mt vs etc cf approx fig vol inc ltd co corp dept".split())
# scripts written without spaces between words: Han, kana, CJK punctuation, full-width forms (not Hangul)
_NOSPACE = re.compile("[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]")
_PROTECTED = re.compile(r"\[[^\[\]]*\]|♪[^♪]*♪")  # "[laughter]", "♪ lyrics ♪"
_WORD_BEFORE_DOT = re.compile(r"(\w+(?:\.\w+)*)\.$")  # "Dr." -> "Dr", "e.g." -> "e.g", "3.5." -> "3.5"
_INITIALS = re.compile(r"[^\W\d_](?:\.[^\W\d_])*")  # "J", "U.S", "e.g", "a.m"
SENTENCE, CLAUSE, WORD = range(3)


def _nospace(char):
    return bool(_NOSPACE.match(char))


# ---------------------------------------------------------------- segmentation (pure)


def _level(text, a, next_char):
    """How strong a cut at text[a] is: SENTENCE after an end mark, CLAUSE after a comma-like mark, else WORD."""
    j = a
    while j > 0 and text[j - 1] in CLOSERS:
        j -= 1
    last = text[j - 1] if j else ""
    if last in SENTENCE_ENDS:
        word = _WORD_BEFORE_DOT.search(text[max(0, j - 32) : j]) if last == "." else None
        if word and (word[1].lower() in ABBREVIATIONS or _INITIALS.fullmatch(word[1])):
            return WORD  # "Mr. Smith", "e.g. this", "J. R. R. Tolkien"
        return CLAUSE if next_char.islower() else SENTENCE  # "Wait... what?" goes on
    return CLAUSE if last in CLAUSE_ENDS else WORD


def _cuts(text, protected=()):
    """Every place `text` may be cut, in order: (a, b, level), the left part ending at a, the right starting at b.

    At a space (b = a + 1) the space is dropped; between two characters (b = a) nothing is. Each cut is one
    `join_segments` undoes exactly: a space cut only between characters of spaced scripts, a gap cut only
    next to a CJK character (and never before a closing mark or after an opening one). No cut falls inside
    a `protected` (start, end) span, and since the text is normalized, 0 < a < len(text) and spaces come one
    at a time.
    """
    inside = set()
    for start, end in protected:
        inside.update(range(start + 1, end))
    cuts = []
    for a in range(1, len(text)):
        if a in inside or text[a - 1] == " ":
            continue
        if text[a] == " ":
            if not (_nospace(text[a - 1]) or _nospace(text[a + 1])):
                cuts.append((a, a + 1, _level(text, a, text[a + 1])))
        elif (
            (_nospace(text[a - 1]) or _nospace(text[a]))
            and text[a - 1] not in OPENERS
            and text[a] not in CLOSERS + SENTENCE_ENDS + CLAUSE_ENDS
        ):
            cuts.append((a, a, _level(text, a, text[a])))
    return cuts


def _pack(parts, fits):
    """Greedily merge consecutive (start, end) spans while the merged span fits."""
    out = []
    for s, e in parts:
        if out and fits((out[-1][0], e)):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _split(span, cuts, level, fits):
    """`span` (with `cuts`, the cuts inside it) cut at every cut of `level` or stronger; runs of parts that fit
    are packed, the others cut finer. A part that fits is never merged across one that does not, so segments
    keep to sentence ends where they can."""
    parts, start, first = [], span[0], 0
    for i, (a, b, strength) in enumerate(cuts):
        if strength <= level:
            parts.append(((start, a), cuts[first:i]))
            start, first = b, i + 1
    parts.append(((start, span[1]), cuts[first:]))
    out, run = [], []
    for part, inner in parts:
        if fits(part):
            run.append(part)
            continue
        out += _pack(run, fits)
        run = []
        out += _split(part, inner, level + 1, fits) if level < WORD else [part]  # a word or cue over budget
    return out + _pack(run, fits)


def count_tokens(text, tokenizer):
    """How many text tokens `text` is, normalized as generation normalizes it. More than TEXT_LENGTH (256, what one
    generation reads; `needs_segments`) and the command, synthesize and the server speak it in segments."""
    return len(tokenizer.text_ids(text))


def needs_segments(n):
    """A text of n tokens is more than one generation reads (the rest would be cut): spoken in segments."""
    return n > TEXT_LENGTH


def split_text(text, tokenizer, max_tokens=MAX_TOKENS):
    """`text`, whitespace-normalized, -> segments of at most `max_tokens` tokens each (as `tokenizer.encode` counts).

    A single word or cue longer than the budget (but within Bark's 256) becomes a segment of its own.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= TEXT_LENGTH:
        raise ValueError(
            f"max_tokens must be an integer in 1..{TEXT_LENGTH} (the tokens one generation reads), got {max_tokens!r}"
        )
    text = normalize_text(text)

    def n_tokens(span):
        return len(tokenizer.encode(text[span[0] : span[1]]))

    # a cue is never cut; lyrics only when they cannot fit one segment (a ♪ near each end of a story)
    protected = [
        m.span() for m in _PROTECTED.finditer(text) if m[0].startswith("[") or n_tokens(m.span()) <= max_tokens
    ]
    spans = _split((0, len(text)), _cuts(text, protected), SENTENCE, lambda span: n_tokens(span) <= max_tokens)
    for span in spans:
        if n_tokens(span) > TEXT_LENGTH:
            raise TextError(
                f"{text[span[0] : span[1]][:40]!r}... is {n_tokens(span)} tokens with nowhere to cut it, "
                f"more than the {TEXT_LENGTH} one generation reads; add spaces or punctuation"
            )
    return [text[s:e] for s, e in spans]


def join_segments(segments):
    """The inverse of split_text: one space between two segments, none where either side is CJK."""
    out = [segments[0]]
    for seg in segments[1:]:
        out.append("" if _nospace(out[-1][-1]) or _nospace(seg[0]) else " ")
        out.append(seg)
    return "".join(out)


# ---------------------------------------------------------------- generation


class Segment(NamedTuple):
    text: str
    full: dict  # semantic_prompt, coarse_prompt, fine_prompt: usable as a voice
    audio: np.ndarray  # float32, 24 kHz, without the silence


def _carry(prompt, full):
    """The next segment's voice: this segment's own tokens, unless too short to be a voice (< ~10 semantic
    tokens break Bark's 1.5 coarse/semantic ratio); then the prompt this segment was given goes on."""
    try:
        return validate_voice(full, "previous segment")
    except VoiceError:
        return prompt


def _one_by_one(bark, texts, voice, continuity, seed, options, advance):
    """(full, audio) of each segment in order, each generated only when the one before is done."""
    prompt = voice
    for i, text in enumerate(texts):
        full, audio = bark.generate(text, voice=prompt, seed=item_seed(seed, i), output_full=True, **options)
        advance(1)
        yield full, audio
        if continuity == "previous":
            prompt = _carry(prompt, full)


def _segment_progress(texts, progress):
    """With progress=True: a bar over the segments (n of N, time left); the stages' own bars are transient."""
    return counter("segments", "segment", len(texts)) if progress else lambda n: None


def _chunk(audio, gap, last):
    """A segment's audio followed by `gap` samples of silence, unless it is the last."""
    audio = audio.astype(np.float32, copy=False)
    return audio if last else np.concatenate([audio, np.zeros(gap, np.float32)])


def check_silence(silence, name="silence"):
    """Seconds of silence between segments: a number from 0 to MAX_SILENCE (more is a typo, not a pause)."""
    if isinstance(silence, bool) or not isinstance(silence, numbers.Real) or not 0 <= silence <= MAX_SILENCE:
        raise ValueError(f"{name} must be a number of seconds from 0 to {MAX_SILENCE:g}, got {silence!r}")
    return silence


def _prepare(bark, text, voice, continuity, silence, seed, max_tokens):
    """Check everything before any generation: -> (segments, loaded voice, silence in samples)."""
    if continuity not in CONTINUITY:
        raise ValueError(
            f"continuity must be 'voice' (every segment on the same voice) or 'previous' (each on "
            f"the segment before), got {continuity!r}"
        )
    check_silence(silence)
    texts = split_text(text, bark.tokenizer, max_tokens)
    check_seed(seed, n=len(texts))  # segment i uses seed + i
    return texts, bark.load_voice(voice), round(silence * bark.sample_rate)


def generate_long(
    bark,
    text,
    voice=None,
    continuity="voice",
    silence=SILENCE,
    seed=None,
    max_tokens=MAX_TOKENS,
    batch_size=16,
    return_segments=False,
    progress=False,
    settings=None,
    **overrides,
):
    """Text of any length -> float32 audio at 24 kHz: the segments' audio joined by `silence` seconds of zeros.

    continuity="voice": every segment is conditioned on `voice`; segments are independent, so they are
    generated `batch_size` at a time. continuity="previous": each segment is conditioned on the full output
    of the one before (the first on `voice`), so they run one after another. settings: a Settings (default:
    LONG_FORM, whose min_eos_p=0.05 cuts the made-up tails that short segments invite), and any of its fields
    as keywords over it (text_temp, top_k, max_duration, ...). With a seed, segment i uses seed + i.
    With return_segments=True, returns (audio, list of Segment).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    texts, voice, gap = _prepare(bark, text, voice, continuity, silence, seed, max_tokens)
    options = dict(settings=replace(settings or LONG_FORM, **overrides), progress=progress, transient=True)
    advance = _segment_progress(texts, progress)
    if continuity == "voice":
        pieces = []
        for i in range(0, len(texts), batch_size):
            # batched: text i with seed s gives what it gives alone with seed s + i
            batch = texts[i : i + batch_size]
            pieces += bark.generate(batch, voice=voice, seed=item_seed(seed, i), output_full=True, **options)
            advance(len(batch))
    else:
        pieces = list(_one_by_one(bark, texts, voice, continuity, seed, options, advance))
    audio = np.concatenate([_chunk(a, gap, i == len(pieces) - 1) for i, (_, a) in enumerate(pieces)])
    if return_segments:
        return audio, [Segment(t, full, a) for t, (full, a) in zip(texts, pieces)]
    return audio


def stream(
    bark,
    text,
    voice=None,
    continuity="voice",
    silence=SILENCE,
    seed=None,
    max_tokens=MAX_TOKENS,
    progress=False,
    settings=None,
    **overrides,
):
    """Like generate_long, but an iterator over the segments' audio, each yielded as soon as it is decoded.

    Every chunk but the last ends with the silence, so the chunks concatenated are generate_long's audio
    for the same arguments. Segments are generated one at a time, to get the first one out soonest.
    Arguments are checked here, before the first chunk is asked for.
    """
    texts, voice, gap = _prepare(bark, text, voice, continuity, silence, seed, max_tokens)
    options = dict(settings=replace(settings or LONG_FORM, **overrides), progress=progress, transient=True)
    pieces = _one_by_one(bark, texts, voice, continuity, seed, options, _segment_progress(texts, progress))
    return (_chunk(audio, gap, i == len(texts) - 1) for i, (_, audio) in enumerate(pieces))
