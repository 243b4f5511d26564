"""Long form: segmentation, generate_long in both continuity modes, stream, and the CLI's --long/--stream."""

import contextlib

import numpy as np
import pytest
import soundfile as sf

from helpers import GENERATE, VOCAB, run
from nanobark.longform import MAX_TOKENS, _carry, generate_long, join_segments, split_text, stream
from nanobark.tokenizer import TextError, Tokenizer, normalize_text

TOKENIZER = Tokenizer({t: i for i, t in enumerate(VOCAB)})  # the tiny model's vocab.txt
VOICE, SEED, DURATION = "v2/en_speaker_6", 7, "0.3"  # 0.3 s: 15 semantic tokens, 22 frames, 7040 samples
# two sentences of 25 and 29 tokens: too many together for the default budget of 50, so two segments
TEXT = (
    "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
    "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
)


# ---------------------------------------------------------------- segmentation

PROSE = (
    "Mr. Smith met Dr. Jones at 3.14 p.m. today. He said hello to the dog, e.g. the cute one! "
    "Pi is 3.14159 and e is 2.718, i.e. small, etc. and so on.   The End?"
)
CJK = "你好世界。你好，世界！世界你好，你好世界，世界你好。" + "你好" * 11 + "。好的"
NO_PUNCTUATION = "the dog is cute and the dog said hello to the world and my dog is the cute dog of the world"
ONE_SENTENCE = " ".join(["the dog is cute and"] * 80) + " he said."  # 402 words
CUES = (
    "Hello [laughter] my dog is cute. ♪ the dog is cute and the dog is cute ♪ He said [clears throat] "
    "hello to the world."
)
CASES = {  # name: (text, budget, expected segments or None)
    "prose": (
        PROSE,
        40,
        [
            "Mr. Smith met Dr. Jones at 3.14 p.m. today.",  # no cut after an abbreviation
            "He said hello to the dog, e.g. the cute one!",
            "Pi is 3.14159 and e is 2.718, i.e. small, etc. and so on. The End?",
        ],
    ),  # packed
    "cjk": (
        CJK,
        6,
        [
            "你好世界。",
            "你好，世界！",
            "世界你好，",
            "你好世界，",
            "世界你好。",  # sentences, clauses
            "你好你好你好",
            "你好你好你好",
            "你好你好你好",
            "你好你好。",
            "好的",
        ],
    ),  # then characters
    "no punctuation": (
        NO_PUNCTUATION,
        8,
        ["the dog is cute and the dog said", "hello to the world and my dog is", "the cute dog of the world"],
    ),
    "one long sentence": (ONE_SENTENCE, MAX_TOKENS, None),
    "mixed scripts": ("你好，Hello world!世界你好。The dog", 5, ["你好，", "Hello world!", "世界你好。", "The dog"]),
    "cues": (
        CUES,
        16,
        [
            "Hello [laughter] my dog is cute.",
            "♪ the dog is cute and the dog is cute ♪ He said",
            "[clears throat] hello to",
            "the world.",
        ],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_split_fits_the_budget_and_joins_back(name):
    text, budget, expected = CASES[name]
    segments = split_text(text, TOKENIZER, budget)
    assert join_segments(segments) == normalize_text(text)
    assert all(0 < len(TOKENIZER.encode(s)) <= budget and s == s.strip() for s in segments)
    if expected is not None:
        assert segments == expected
    for cue in ("[laughter]", "[clears throat]", "♪ the dog is cute and the dog is cute ♪"):
        assert cue not in text or any(cue in s for s in segments)


def test_split_one_long_sentence_packs_words_greedily():
    segments = split_text(ONE_SENTENCE, TOKENIZER)
    assert len(segments) == 9 and all(len(TOKENIZER.encode(s)) == MAX_TOKENS for s in segments[:-1])


def test_split_keeps_an_overlong_cue_whole_and_refuses_an_uncuttable_text():
    segments = split_text(CUES, TOKENIZER, 6)
    assert "[clears throat]" in segments  # 14 tokens, over 6, kept whole
    assert not any("♪ the dog is cute and the dog is cute ♪" in s for s in segments)  # lyrics over 6: cut
    with pytest.raises(TextError, match="nowhere to cut"):
        split_text("hello " + "a." * 150, TOKENIZER, 10)  # 300 tokens: "a", "." ...
    with pytest.raises(ValueError, match="max_tokens must be an integer in 1..256"):
        split_text("Hello", TOKENIZER, 0)
    with pytest.raises(TextError, match="empty"):
        split_text("  ", TOKENIZER)


def test_split_cuts_lyrics_too_long_for_one_generation():
    """A story with one ♪ near each end is one 'lyric' of 300+ tokens: it is cut (it used to be refused as
    'nowhere to cut'); lyrics that fit one segment stay whole (the "cues" case above)."""
    story = "♪ " + " ".join([TEXT] * 6) + " ♪"
    assert len(TOKENIZER.encode(story)) > 256
    segments = split_text(story, TOKENIZER)
    assert join_segments(segments) == normalize_text(story)
    assert all(len(TOKENIZER.encode(s)) <= MAX_TOKENS for s in segments) and len(segments) >= 7
    assert segments[0].startswith("♪ Hello,") and segments[-1].endswith("he said. ♪")


# ---------------------------------------------------------------- generation


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test of this file on one thread (conftest.py's one_thread)."""


@contextlib.contextmanager
def spy(bark):
    """Log ("generate", text, voice) for each bark.generate call, on this instance only."""
    log, real = [], bark.generate

    def generate(text, voice=None, **kwargs):
        log.append(("generate", text, voice))
        return real(text, voice=voice, **kwargs)

    bark.generate = generate
    try:
        yield log
    finally:
        del bark.generate


@pytest.fixture(scope="module")
def by_voice(bark):
    """generate_long with continuity="voice": (audio, segments, generate calls)."""
    with spy(bark) as log:
        audio, segments = generate_long(
            bark, TEXT, VOICE, seed=SEED, max_duration=float(DURATION), return_segments=True
        )
    return audio, segments, log


@pytest.fixture(scope="module")
def by_previous(bark):
    with spy(bark) as log:
        audio, segments = generate_long(
            bark,
            TEXT,
            VOICE,
            continuity="previous",
            silence=0.1,
            seed=SEED,
            max_duration=float(DURATION),
            return_segments=True,
        )
    return audio, segments, log


def joined(segments, silence):
    gap = np.zeros(round(silence * 24_000), np.float32)
    return np.concatenate([x for s in segments for x in (s.audio, gap)][:-1])


def test_voice_continuity_is_one_batched_call(by_voice):
    audio, segments, log = by_voice
    assert [s.text for s in segments] == split_text(TEXT, TOKENIZER) and len(segments) == 2
    assert len(log) == 1 and log[0][1] == [s.text for s in segments]  # one generate call for all segments
    assert audio.dtype == np.float32 and len(audio) == 2 * 7040 + 6000
    np.testing.assert_array_equal(audio, joined(segments, 0.25))


def test_previous_continuity_conditions_each_segment_on_the_one_before(bark, by_previous):
    audio, segments, log = by_previous
    assert [text for _, text, _ in log] == [s.text for s in segments] and len(segments) == 2
    preset = bark.load_voice(VOICE)
    for key in preset:
        np.testing.assert_array_equal(log[0][2][key], preset[key])
        for before, (_, _, voice) in zip(segments, log[1:]):  # segment n+1's voice is segment n's full output
            np.testing.assert_array_equal(voice[key], before.full[key])
    assert len(audio) == sum(len(s.audio) for s in segments) + 2400
    np.testing.assert_array_equal(audio, joined(segments, 0.1))


def test_an_output_too_short_to_be_a_voice_keeps_the_prompt():
    short = {
        "semantic_prompt": np.zeros(5, np.int64),
        "coarse_prompt": np.zeros((2, 7), np.int64),
        "fine_prompt": np.zeros((8, 7), np.int64),
    }  # 7/5 frames per token: not Bark's 1.5
    prompt = {"semantic_prompt": np.zeros(10, np.int64)}
    assert _carry(prompt, short) is prompt
    ok = dict(
        short,
        semantic_prompt=np.zeros(10, np.int64),
        coarse_prompt=np.zeros((2, 15), np.int64),
        fine_prompt=np.zeros((8, 15), np.int64),
    )
    np.testing.assert_array_equal(_carry(prompt, ok)["coarse_prompt"], ok["coarse_prompt"])


class ScriptedBark:
    """Gives each generate call the next scripted output and logs the voice it got: continuity logic alone."""

    tokenizer, sample_rate = TOKENIZER, 24_000

    def __init__(self, outputs):
        self.outputs, self.voices = list(outputs), []

    def load_voice(self, voice):
        return voice

    def generate(self, text, voice=None, **kwargs):
        self.voices.append(voice)
        return self.outputs.pop(0), np.zeros(320, np.float32)


def test_previous_continuity_keeps_the_last_usable_prompt_past_a_too_short_segment():
    """Segment 2 is too short to be a voice: segment 3 goes on from segment 1 (2's prompt), not from the voice."""

    def voice(n, value):  # n semantic tokens and 1.5 n frames: a usable voice
        return {
            "semantic_prompt": np.full(n, value),
            "coarse_prompt": np.full((2, 3 * n // 2), value),
            "fine_prompt": np.full((8, 3 * n // 2), value),
        }

    first, too_short, third = voice(20, 1), voice(2, 2), voice(20, 3)
    too_short["coarse_prompt"], too_short["fine_prompt"] = (
        too_short["coarse_prompt"][:, :1],
        too_short["fine_prompt"][:, :1],
    )
    stub = ScriptedBark([first, too_short, third, voice(20, 4)])
    generate_long(stub, "Hello. The dog. The world. She said.", voice(20, 9), continuity="previous", max_tokens=3)
    assert len(stub.voices) == 4
    assert [int(v["semantic_prompt"][0]) for v in stub.voices] == [9, 1, 1, 3]


def test_batched_greedy_equals_segment_by_segment(bark):
    text = "Hello, my dog is cute. The world is cute, and my dog is cute."
    greedy = dict(top_k=1, fine_temp=None, max_duration=float(DURATION))
    audio, segments = generate_long(bark, text, VOICE, max_tokens=12, return_segments=True, **greedy)
    assert len(segments) == 2
    alone = [bark.generate(s.text, voice=VOICE, output_full=True, min_eos_p=0.05, **greedy) for s in segments]
    for s, (full, a) in zip(segments, alone):
        np.testing.assert_array_equal(s.audio, a)
        for key in full:
            np.testing.assert_array_equal(s.full[key], full[key])


def test_more_segments_than_the_batch_size_keep_seed_plus_i(bark):
    """Segments go batch_size at a time; segment i still uses seed + i, whichever batch it falls in."""
    text = "Hello, my dog is cute. The world is cute. She said hello to the dog. He said hello to the world."
    kwargs = dict(seed=SEED, max_duration=float(DURATION))
    audio, segments = generate_long(bark, text, VOICE, max_tokens=8, batch_size=2, return_segments=True, **kwargs)
    assert len(segments) == 4  # two batches of two
    for i, s in enumerate(segments):
        full, a = bark.generate(s.text, voice=VOICE, output_full=True, min_eos_p=0.05, **dict(kwargs, seed=SEED + i))
        np.testing.assert_array_equal(s.audio, a)
        for key in full:
            np.testing.assert_array_equal(s.full[key], full[key])


def test_stream_yields_generate_long_audio_before_the_last_segment_is_made(bark, by_voice):
    with spy(bark) as log:
        chunks = []
        for chunk in stream(bark, TEXT, VOICE, seed=SEED, max_duration=float(DURATION)):
            log.append(("chunk",))
            chunks.append(chunk)
    assert [e[0] for e in log] == ["generate", "chunk"] * 2  # each segment is out before the next is made
    assert [len(c) for c in chunks] == [7040 + 6000, 7040]
    np.testing.assert_array_equal(np.concatenate(chunks), by_voice[0])  # batched == one by one, seed + i


def test_misuse_fails_before_generating(bark):
    with pytest.raises(ValueError, match="continuity must be 'voice'"):
        generate_long(bark, "Hello", continuity="sideways")
    with pytest.raises(ValueError, match="silence must be a number of seconds from 0 to 60"):
        stream(bark, "Hello", silence=-1)  # at the call, not at the first chunk
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2"):
        generate_long(bark, "Hello", seed="1")
    with pytest.raises(ValueError, match=r"item i of 2 uses seed \+ i"):  # the last segment's seed overflows
        generate_long(bark, TEXT, seed=2**63 - 1)
    with pytest.raises(ValueError, match="batch_size"):
        generate_long(bark, "Hello", batch_size=0)


# ---------------------------------------------------------------- CLI


def run_cli(*args):
    """scripts/generate.py speaking TEXT as the tests above do: -> its CompletedProcess, in bytes."""
    settings = ["--seed", SEED, "--max-duration", DURATION, "--voice", VOICE, "--quiet"]
    return run(GENERATE, TEXT, *settings, *args, text=False)


@pytest.mark.slow
def test_cli_long_writes_what_generate_long_gives(converted, by_voice, tmp_path):
    out = tmp_path / "story.wav"
    r = run_cli("--model", converted, "--long", "--out", str(out))
    assert r.returncode == 0, r.stderr.decode()
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 24_000 and audio.shape == by_voice[0].shape
    assert np.abs(audio - np.clip(by_voice[0], -1, 1)).max() <= 1 / 2**15 + 1e-6  # 16-bit quantization


@pytest.mark.slow
def test_cli_stream_writes_raw_pcm_to_stdout(converted, by_previous):
    r = run_cli("--model", converted, "--stream", "--continuity", "previous", "--silence", "0.1", "--out", "-")
    assert r.returncode == 0, r.stderr.decode()
    assert b"standard output: " in r.stderr and b"s of audio" in r.stderr  # the status line stays off the audio
    pcm = np.frombuffer(r.stdout, "<i2").astype(np.float32) / 32768  # as a .wav file holds them
    assert pcm.shape == by_previous[0].shape
    assert np.abs(pcm - np.clip(by_previous[0], -1, 1)).max() <= 1 / 2**15 + 1e-6


class StubBark:
    """Just enough of Bark to see which path the CLI takes."""

    tokenizer = TOKENIZER

    def __init__(self):
        self.calls = []

    def generate(self, text, voice=None, **kwargs):
        self.calls.append(("generate", kwargs))
        return np.zeros(10, np.float32)


def stub_generate_long(bark, text, voice=None, **kwargs):
    bark.calls.append(("generate_long", kwargs))
    return np.zeros(10, np.float32)


def test_cli_switches_to_long_form_for_text_over_256_tokens(capsys, monkeypatch):
    import nanobark.cli.speak as speak

    monkeypatch.setattr(speak, "generate_long", stub_generate_long)
    long_text = " ".join(["The dog said hello to the world, and the world said hello to the dog."] * 16)
    for text, expected, min_eos_p in ((TEXT, "generate", 0.2), (long_text, "generate_long", 0.05)):
        bark = StubBark()
        speak.audio_chunks(bark, speak.parse_speak([text, "--out", "-"]), None)
        assert [name for name, _ in bark.calls] == [expected]
        assert bark.calls[0][1]["settings"].min_eos_p == min_eos_p  # the form's own: one generation, long form
    assert "the text is 272 tokens" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_rejects_long_form_options_without_long(converted, tmp_path):
    r = run_cli("--model", converted, "--continuity", "previous", "--out", str(tmp_path / "x.wav"))
    assert r.returncode == 2 and b"add --long" in r.stderr
    r = run_cli("--model", converted, "--long", "--silence", "-1", "--out", str(tmp_path / "x.wav"))
    assert r.returncode == 2 and b"--silence must be a number of seconds from 0 to 60" in r.stderr


@pytest.mark.parametrize(
    "budget, expected",
    [
        (20, ["Mr. Smith met Dr. Jones,", "and the dog said hello to the world."]),  # the comma, not "Dr."
        (12, ["Mr. Smith met", "Dr. Jones,", "and the dog said hello to the world."]),  # a word, not "Mr."
    ],
)
def test_a_capitalised_abbreviation_is_no_sentence_end(budget, expected):
    """Mr. and Dr. as written, capital first: a segment never ends on one when a clause or word cut is there."""
    segments = split_text("Mr. Smith met Dr. Jones, and the dog said hello to the world.", TOKENIZER, budget)
    assert segments == expected
