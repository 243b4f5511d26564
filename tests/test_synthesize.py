"""Corpus synthesis (`nanobark synthesize`, nanobark/cli/corpus.py and manifest.py): the same files whatever the
number of processes or the batch size, a killed run finished by the same command, and every kind of wrong row
named by its line. Processes run with one thread each: on the CPU the codec's bytes depend on the thread count."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import soundfile as sf

import nanobark.cli as cli
from helpers import HANG, VOCAB, forged_npz, leftovers, npy_header, python, run, usage_error, wait_for
from nanobark import Bark, generate_long
from nanobark.cli.corpus import read_jsonl
from nanobark.cli.manifest import ManifestError, read_manifest
from nanobark.cli.speak import pcm16, write_audio
from nanobark.cli.synthesize import manifest_voices
from nanobark.longform import split_text
from nanobark.tokenizer import Tokenizer

V1, V2 = "v2/en_speaker_6", "announcer"
STORY = (  # two sentences of 25 and 29 tokens: two segments in long form
    "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
    "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
)
# fmt: off
ROWS = [  # mixed lengths, two voices and none, a long item, a bad row (line 9), per-row settings
    {"id": "short-1", "text": "Hello.", "voice": V1},
    {"id": "short-2", "text": "The world.", "voice": V2},
    {"id": "mid-1", "text": "Hello, my dog is cute.", "voice": V1},
    {"id": "mid-2", "text": "She said hello to the world.", "voice": V2},
    {"id": "mid-3", "text": "The dog and the world said hello.", "voice": V1, "seed": 7},
    {"id": "longer-1", "text": "She said hello to my dog, and my dog said hello to her and the world.", "voice": V2},
    {"id": "longer-2", "text": "The world said hello to my cute dog and laughed.", "voice": V1, "max_duration": 0.3},
    {"id": "no-voice", "text": "Hello world."},
    {"id": "bad-voice", "text": "Hello.", "voice": "v2/en_speaker_66"},
    {"id": "cool", "text": "Hello, the dog is cute.", "voice": V2, "text_temp": 0.5},
    {"id": "story", "text": STORY, "voice": V1, "long": True},
    {"id": "last", "text": "My dog.", "voice": V2, "top_k": 50},
]
# fmt: on
GOOD = [r["id"] for r in ROWS if r["id"] != "bad-voice"]
TOKENIZER = Tokenizer({t: i for i, t in enumerate(VOCAB)})  # the tiny model's vocab.txt


def write_manifest(folder, rows=ROWS):
    path = os.path.join(folder, "corpus.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def command(manifest, out, model, *extra):
    return ["synthesize", manifest, "--out-dir", out, "--model", model, "--max-duration", "0.2", *extra]


def audio_files(out):
    """{name: bytes} of the audio files in out (not the manifests, not hidden files)."""
    names = [n for n in os.listdir(out) if n.endswith(".wav")]
    return {n: open(os.path.join(out, n), "rb").read() for n in names}


def manifest_lines(out, drop=("seconds",)):
    """{id: line without its timings}; each id at most once."""
    with open(os.path.join(out, "manifest.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len({e["id"] for e in lines}) == len(lines)
    return {e["id"]: {k: v for k, v in e.items() if k not in drop} for e in lines}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_manifest(str(tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="module")
def one_process(corpus, converted, tmp_path_factory):
    """The 12 rows made by one process (python -m nanobark), in batches of 4: the reference."""
    out = str(tmp_path_factory.mktemp("one"))
    r = run("-m", "nanobark", *command(corpus, out, converted, "--batch-size", "4"))
    assert r.returncode == 0, r.stderr
    return out, r


# ---- 1. one process or two: the same files


@pytest.mark.slow
def test_two_processes_make_the_same_files_as_one(one_process, corpus, converted, tmp_path):
    out1, r1 = one_process
    assert "12 rows: 11 done, 1 failed, 0 skipped" in r1.stdout
    assert "corpus.jsonl line 9: unknown voice preset 'v2/en_speaker_66'" in r1.stderr  # reported as it starts
    out2 = str(tmp_path / "two")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "nanobark"]
    r2 = run(*torchrun, *command(corpus, out2, converted, "--batch-size", "4"))
    assert r2.returncode == 0, r2.stderr
    assert "12 rows: 11 done, 1 failed, 0 skipped" in r2.stdout  # rank 0's summary of both ranks' work
    assert "rank 0:" in r2.stderr and "rank 1:" in r2.stderr  # both worked

    files = audio_files(out1)
    assert sorted(files) == sorted(f"{i}.wav" for i in GOOD)
    assert audio_files(out2) == files  # byte for byte
    assert manifest_lines(out2) == manifest_lines(out1)
    assert list(manifest_lines(out1)) == GOOD  # in the manifest's order
    for out in (out1, out2):
        with open(os.path.join(out, "errors.jsonl"), encoding="utf-8") as f:
            (error,) = [json.loads(line) for line in f]
        assert error["line"] == 9 and error["id"] == "bad-voice" and "close names: v2/en_speaker_6" in error["error"]
        assert leftovers(out) == []  # the rank files merged and gone, no temporary file


@pytest.mark.slow
def test_an_item_is_what_bark_generate_makes_of_it_alone(one_process, converted, tmp_path, one_thread):
    """The seed in the manifest is the whole story: Bark.generate with it, alone, gives the same file."""
    out, _ = one_process
    lines = manifest_lines(out)
    bark = Bark.from_pretrained(converted, device="cpu")
    for id_ in ("mid-2", "mid-3"):
        e = lines[id_]
        assert e["seed"] == 7 if id_ == "mid-3" else e["seed"] != 7
        audio = bark.generate(e["text"], voice=e["voice"], seed=e["seed"], max_duration=0.2)
        write_audio(str(tmp_path / "alone.wav"), audio, bark.sample_rate)
        assert (tmp_path / "alone.wav").read_bytes() == open(os.path.join(out, e["file"]), "rb").read()
        assert e["duration"] == len(audio) / bark.sample_rate


# ---- 2. batch size 1 or 4: the same files


@pytest.mark.slow
def test_batch_size_1_and_4_make_the_same_files(one_process, corpus, converted, tmp_path):
    out1, _ = one_process
    out = str(tmp_path / "batch1")
    r = run("-m", "nanobark", *command(corpus, out, converted, "--batch-size", "1", "--quiet"))
    assert r.returncode == 0, r.stderr
    assert "line 9: unknown voice" in r.stderr and "items:" not in r.stderr  # --quiet: no progress
    assert audio_files(out) == audio_files(out1)
    assert manifest_lines(out) == manifest_lines(out1)


# ---- 3. killed and started again


def segments(row):
    """The texts Bark.generate is given for a row: its segments in long form, else its text."""
    return split_text(row["text"], TOKENIZER) if row.get("long") else [row["text"]]


def count_generations(monkeypatch):
    """Every text Bark.generate is asked for (a long item's segments each count)."""
    texts = []
    generate = Bark.generate

    def counting(self, text, *args, **kwargs):
        texts.extend(text if isinstance(text, list) else [text])
        return generate(self, text, *args, **kwargs)

    monkeypatch.setattr(Bark, "generate", counting)
    return texts


@pytest.mark.slow
def test_a_killed_run_started_again_makes_only_the_rest(
    one_process, corpus, converted, tmp_path, monkeypatch, one_thread
):
    reference, _ = one_process
    out = str(tmp_path / "killed")
    rank_file = os.path.join(out, ".manifest.rank0.jsonl")
    argv = command(corpus, out, converted, "--batch-size", "1", "--quiet")
    p = python("-m", "nanobark", *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: p.poll() is not None or os.path.exists(rank_file) and open(rank_file, "rb").read().count(b"\n") >= 3
        )
        assert p.poll() is None, "the run ended before it could be killed"
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill()
        p.wait()
    # nothing partial under a final name: every audio file there is the whole file
    before = audio_files(out)
    assert before and all(data == audio_files(reference)[name] for name, data in before.items())
    with open(rank_file, encoding="utf-8") as f:
        recorded = {json.loads(line)["id"] for line in f if line.endswith("\n")}
    assert 3 <= len(recorded) < len(GOOD)
    stat = {i: os.stat(os.path.join(out, f"{i}.wav")) for i in recorded}

    texts = count_generations(monkeypatch)
    assert cli.main(argv) == 0
    rest = [r for r in ROWS if r["id"] in set(GOOD) - recorded]
    assert sorted(texts) == sorted(t for r in rest for t in segments(r))  # the rest only, each once
    for i in recorded:  # the files made before the kill were not made again
        s = os.stat(os.path.join(out, f"{i}.wav"))
        assert (s.st_ino, s.st_mtime_ns) == (stat[i].st_ino, stat[i].st_mtime_ns)
    assert audio_files(out) == audio_files(reference)
    assert manifest_lines(out) == manifest_lines(reference)
    assert leftovers(out) == []  # a temporary file the kill left behind is gone too


@pytest.mark.slow
def test_sigterm_stops_a_run_with_143_keeping_what_is_finished(corpus, converted, tmp_path):
    out = str(tmp_path / "stopped")
    p = python("-m", "nanobark", *command(corpus, out, converted, "--batch-size", "1"))
    rank_file = os.path.join(out, ".manifest.rank0.jsonl")
    wait_for(lambda: p.poll() is not None or os.path.exists(rank_file))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=HANG)
    assert p.returncode == 143, err
    assert "interrupted; the items finished so far are in" in err and "Traceback" not in err
    assert [n for n in leftovers(out) if n.endswith(".tmp")] == []  # the write in progress was cleaned up


@pytest.mark.slow
def test_done_items_are_skipped_and_other_settings_or_overwrite_make_them_again(
    converted, tmp_path, monkeypatch, capsys, one_thread
):
    manifest = write_manifest(str(tmp_path), ROWS[:2])
    out = str(tmp_path / "out")
    texts = count_generations(monkeypatch)
    bark = Bark.from_pretrained(converted, device="cpu")
    monkeypatch.setattr(Bark, "from_pretrained", lambda *a, **k: bark)  # loaded once for the eight runs

    def made(*extra):
        texts.clear()
        assert cli.main(command(manifest, out, converted, "--quiet", *extra)) == 0
        return len(texts), capsys.readouterr().out

    n, said = made()
    assert n == 2 and "2 rows: 2 done, 0 failed, 0 skipped" in said
    n, said = made()
    assert n == 0 and "2 rows: 0 done, 0 failed, 2 skipped" in said  # nothing to do: exit 0
    assert made("--seed", "1")[0] == 2  # another base seed: other audio
    assert made("--seed", "1")[0] == 0
    assert made("--seed", "1", "--overwrite")[0] == 2
    os.remove(os.path.join(out, "short-1.wav"))  # a file gone is made again
    assert made("--seed", "1")[0] == 1
    assert made("--seed", "1", "--format", "flac")[0] == 2  # a .wav is not the .flac asked for
    assert sorted(manifest_lines(out)) == ["short-1", "short-2"]


# ---- 4. wrong rows, each named by its line


def problems_of(tmp_path, converted, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    rows, problems = read_manifest(str(path), manifest_voices(converted, str(tmp_path)))
    return rows, [p.message.removeprefix(f"{path} ") for p in problems]


OK = '{"id": "ok", "text": "Hello."}\n'


# fmt: off
@pytest.mark.parametrize("line, said", [
    ("{'id': 'a', 'text': 'Hi'}", "line 2: not JSON (Expecting property name enclosed in double quotes"),
    ('["a", "Hi"]', "line 2: a JSON list, not an object"),
    ('{"id": "a"}', "line 2: no text"),
    ('{"id": "a", "text": "   "}', "line 2: the text is empty"),
    ('{"text": "Hi"}', "line 2: no id; every row needs a unique id"),
    ('{"id": "ok", "text": "Hi"}', "line 2: duplicate id 'ok', first on line 1"),
    ('{"id": "OK", "text": "Hi"}', "line 2: duplicate id 'OK', first on line 1 (as 'ok': ids that differ only"),
    ('{"id": "a/b", "text": "Hi"}', "line 2: id 'a/b' has a path separator"),
    ('{"id": "..", "text": "Hi"}', "line 2: id '..' has a path separator or is '.'/'..'"),
    ('{"id": "../../etc/x", "text": "Hi"}', "line 2: id '../../etc/x' has a path separator"),
    ('{"id": "", "text": "Hi"}', "line 2: no id"),
    ('{"id": ".hidden", "text": "Hi"}', "line 2: id '.hidden' starts with '.'"),
    ('{"id": "a\\ud800", "text": "Hi"}', "line 2: id 'a\\ud800' is not valid UTF-8 (code point 0xd800)"),
    ('{"id": "a\\udcff", "text": "Hi"}', "line 2: id 'a\\udcff' is not valid UTF-8 (byte 0xff)"),  # was: every run
    ('{"id": "%s", "text": "Hi"}' % ("é" * 101), "line 2: the id is 202 bytes, over 200"),
    ('{"id": "a", "text": "Hi", "voice": "v2/en_speaker_66"}', "line 2: unknown voice preset 'v2/en_speaker_66'"),
    ('{"id": "a", "text": "Hi", "voice": "me.wav"}', "line 2: voice 'me.wav' is a recording; make it a voice"),
    ('{"id": "a", "text": "Hi", "voice": "missing.npz"}', "line 2: voice file"),
    ('{"id": "a", "text": "Hi", "text_tmp": 0.5}', "line 2: unknown column 'text_tmp' (did you mean 'text_temp'?)"),
    ('{"id": "a", "text": "Hi", "speaker": 3}', "line 2: unknown column 'speaker'; the columns are id, text"),
    ('{"id": "a", "text": "Hi", "text_temp": 0}', "line 2: text_temp must be > 0, got 0"),
    ('{"id": "a", "text": "Hi", "top_p": 1.5}', "line 2: top_p must be in (0, 1]"),
    ('{"id": "a", "text": "Hi", "top_k": "many"}', "line 2: top_k must be an integer, got 'many'"),
    ('{"id": "a", "text": "Hi", "seed": -1}', "line 2: seed must be an integer from 0 to 2**63 - 1"),
    ('{"id": "a", "text": "Hi", "max_duration": NaN}', "line 2: max_duration must be a finite number"),
    ('{"id": "a", "text": "Hi", "long": "maybe"}', "line 2: long must be true or false"),
])
# fmt: on
def test_a_wrong_row_is_named_by_its_line_and_the_others_go_on(line, said, converted, tmp_path):
    rows, problems = problems_of(
        tmp_path, converted, "corpus.jsonl", OK + line + "\n\n" + OK.replace("ok", "ok3")
    )
    assert [r.id for r in rows] == ["ok", "ok3"] and [r.line for r in rows] == [1, 4]  # blank line 3 skipped
    assert len(problems) == 1 and problems[0].startswith(said), problems


def test_csv_tsv_and_plain_text_manifests(converted, tmp_path):
    rows, problems = problems_of(tmp_path, converted, "c.csv", 'id,text,voice,seed,long\n'
                                 'a,"Hello, ""dog""",v2/en_speaker_6,3,true\n'
                                 '\nb,"two\nlines",,,\nc,Hi,,x,\nd,Hi,,,,extra\n')
    assert [(r.id, r.text, r.voice, r.seed, r.long) for r in rows] == [
        ("a", 'Hello, "dog"', "v2/en_speaker_6", 3, True), ("b", "two\nlines", None, None, False)]
    assert problems == ["line 6: seed must be an integer, got 'x'",
                        "line 7: 6 cells, but the header names 5 columns"]
    rows, _ = problems_of(tmp_path, converted, "t.tsv", "id\ttext\ttop_k\na\tHi, there\t5\n")
    assert rows[0].text == "Hi, there" and rows[0].settings == {"top_k": 5}
    rows, problems = problems_of(tmp_path, converted, "t.txt", "\ufeffHello.\n\n  \nThe world [laughs]\r\n")
    assert [(r.id, r.text, r.line) for r in rows] == [
        ("line-0001", "Hello.", 1),
        ("line-0004", "The world [laughs]", 4),
    ]
    assert problems == []


@pytest.mark.parametrize(
    "name, content, said",
    [
        ("c.csv", "id,text,speaker\na,Hi,x\n", "line 1: unknown column 'speaker'"),
        ("c.csv", "\nid,voice\na,x\n", "line 2: the header has no text column"),
        ("c.csv", "", "has no header row"),
        ("c.jsonl", "\n\n", "has no rows"),
        ("c.jsonl", OK.encode() + b'{"id": "b\xff", "text": "Hi"}\n', "line 2 is not UTF-8 (byte 0xff)"),
        ("c.json", '[{"id": "a", "text": "Hi"}]', "a .json file is read as one document"),
    ],
)
def test_a_manifest_that_cannot_be_read_at_all_is_one_error(name, content, said, converted, tmp_path):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(ManifestError) as e:
        read_manifest(str(path), manifest_voices(converted, str(tmp_path)))
    assert said in str(e.value) and str(e.value).startswith(str(path)), str(e.value)


# ---- the command: usage errors exit 2 before loading, every item wrong exits 1


def test_usage_errors_exit_2_with_one_line_before_loading(converted, tmp_path, no_loading, capsys):
    manifest = write_manifest(str(tmp_path), ROWS[:1])
    out = str(tmp_path / "out")
    assert "nanobark synthesize: error: cannot read" in usage_error(
        command("none.jsonl", out, converted), capsys
    )
    assert "--batch-size must be at least 1" in usage_error(
        command(manifest, out, converted, "--batch-size", "0"), capsys
    )
    assert "invalid choice: 'aiff'" in usage_error(command(manifest, out, converted, "--format", "aiff"), capsys)
    assert "is a file, not a folder" in usage_error(command(manifest, manifest, converted), capsys)
    assert "--int8 is for CPU" in usage_error(
        command(manifest, out, converted, "--int8", "--dtype", "float16"), capsys
    )
    (tmp_path / "bad.csv").write_text("id,txt\n")
    assert "line 1: unknown column 'txt' (did you mean 'text'?)" in usage_error(
        command(str(tmp_path / "bad.csv"), out, converted), capsys
    )
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "manifest.jsonl"), "w").close()
    assert "is the manifest this command writes" in usage_error(
        command(os.path.join(out, "manifest.jsonl"), out, converted), capsys
    )


def test_every_row_wrong_exits_1_without_loading_the_model(converted, tmp_path, no_loading, capsys):
    manifest = write_manifest(str(tmp_path), [{"id": "a/b", "text": "Hi"}, {"id": "c", "voice": V1}])
    out = str(tmp_path / "out")
    assert cli.main(command(manifest, out, converted)) == 1
    captured = capsys.readouterr()
    assert "2 rows: 0 done, 2 failed, 0 skipped" in captured.out
    assert "line 1: id 'a/b' has a path separator" in captured.err and "line 2: no text" in captured.err
    with open(os.path.join(out, "errors.jsonl"), encoding="utf-8") as f:
        assert [(e["line"], e["id"]) for e in map(json.loads, f)] == [(1, "a/b"), (2, "c")]


def plan_of(rows, **job):
    from nanobark.cli.corpus import Job, plan
    from nanobark.cli.manifest import Row

    rows = [Row(i, f"r{i}", text, None, None, None, long, settings) for i, (text, long, settings) in enumerate(rows)]
    items, problems = plan(rows, Job("out", "corpus.jsonl", "m", save=None, **job), TOKENIZER)
    assert problems == []
    return [(it.long, it.settings["min_eos_p"]) for it in items]


def test_a_long_item_stops_at_0_05_and_a_short_one_at_0_2_unless_the_flag_or_row_says():
    """Suno's long-form notebook's min_eos_p (0.05) for long items, whether the row says long or the text is
    over 256 tokens; Bark's 0.2 for the others; --min-eos-p under a row's own min_eos_p over both."""
    over = " ".join(["dog"] * 300)
    rows = [("Hello.", False, {}), ("Hello.", True, {}), (over, False, {}), ("Hello.", True, {"min_eos_p": 0.3})]
    assert plan_of(rows) == [(False, 0.2), (True, 0.05), (True, 0.05), (True, 0.3)]
    flagged = [(True, 0.1), (True, 0.1), (True, 0.1), (True, 0.3)]
    assert plan_of(rows, defaults={"min_eos_p": 0.1}) == [(False, 0.1), *flagged[1:]]


def test_a_text_of_exactly_256_tokens_is_one_generation_and_257_is_long_form():
    """One generation reads 256 text tokens (Suno's original truncates only a text over 256): 256 fit."""
    texts = [" ".join(["dog"] * n) for n in (255, 256, 257)]
    assert [len(TOKENIZER.encode(t)) for t in texts] == [255, 256, 257]
    assert plan_of([(t, False, {}) for t in texts]) == [(False, 0.2), (False, 0.2), (True, 0.05)]


def test_a_rerun_that_makes_nothing_and_fails_a_row_exits_1(converted, tmp_path, monkeypatch, capsys, one_thread):
    """Exit 0 needs something made or nothing left to do: items done by an earlier run are neither, so a rerun
    whose only item left fails again exits 1 (the first run, which made the others, exited 0)."""
    bark = Bark.from_pretrained(converted, device="cpu")
    monkeypatch.setattr(Bark, "from_pretrained", lambda *a, **k: bark)
    rows = [*ROWS[:2], {"id": "fails", "text": "My dog is cute.", "voice": V1}]
    manifest, out = write_manifest(str(tmp_path), rows), str(tmp_path / "out")
    generate = Bark.generate

    def fails_for_one(self, text, *args, **kwargs):
        if "My dog is cute." in text:  # a list: the command generates in batches
            raise RuntimeError("out of memory")
        return generate(self, text, *args, **kwargs)

    monkeypatch.setattr(Bark, "generate", fails_for_one)
    assert cli.main(command(manifest, out, converted, "--quiet", "--batch-size", "1")) == 0
    said = capsys.readouterr().out
    assert "3 rows: 2 done, 1 failed, 0 skipped" in said
    assert cli.main(command(manifest, out, converted, "--quiet", "--batch-size", "1")) == 1
    assert "3 rows: 0 done, 1 failed, 2 skipped" in capsys.readouterr().out
    assert cli.main(command(write_manifest(str(tmp_path), ROWS[:2]), out, converted, "--quiet")) == 0  # all done


# ---- issue 18: an item is done only when its file is whole; never write over files this job did not make


def whole_files(out):
    """{id: whether its file reads back to the duration its manifest line records}."""
    from nanobark.cli.speak import audio_frames

    return {
        i: audio_frames(os.path.join(out, e["file"])) == round(e["duration"] * Bark.sample_rate)
        for i, e in manifest_lines(out).items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["flac", "ogg"])
def test_a_full_disk_that_cuts_an_item_short_records_nothing_and_a_rerun_makes_it(ext, converted, tmp_path):
    """Before: libsndfile returned without an error, the cut files were recorded as done (exit 0), and every
    rerun skipped them."""
    from test_cli import FULL_DISK_AT_AUDIO

    manifest, out = write_manifest(str(tmp_path), ROWS[:2]), str(tmp_path / "out")
    argv = command(manifest, out, converted, "--format", ext, "--quiet")
    r = run("-c", FULL_DISK_AT_AUDIO, *argv)
    assert r.returncode == 1 and "cut short" in r.stderr, r.stderr
    assert [n for n in os.listdir(out) if not n.endswith(".jsonl")] == []  # no audio, no temporary file
    for name in ("manifest.jsonl", ".manifest.rank0.jsonl"):  # and no line says an item is done
        assert read_jsonl(os.path.join(out, name)) == []
    r = run("-m", "nanobark", *argv)
    assert r.returncode == 0 and "2 rows: 2 done, 0 failed, 0 skipped" in r.stdout, r.stderr
    assert whole_files(out) == {"short-1": True, "short-2": True}


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["flac", "wav"])
def test_a_done_item_whose_file_was_cut_or_emptied_since_is_made_again(ext, converted, tmp_path, capsys):
    manifest, out = write_manifest(str(tmp_path), ROWS[:2]), str(tmp_path / "out")
    argv = command(manifest, out, converted, "--format", ext, "--quiet")
    assert cli.main(argv) == 0
    with open(os.path.join(out, f"short-1.{ext}"), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)
    open(os.path.join(out, f"short-2.{ext}"), "w").close()
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "2 rows: 2 done, 0 failed, 0 skipped" in capsys.readouterr().out  # before: 2 skipped
    assert whole_files(out) == {"short-1": True, "short-2": True}


@pytest.mark.parametrize("ext, name", [("wav", "short-1.wav"), ("flac", "short-2.flac"), ("wav", "link")])
def test_files_in_out_dir_this_job_did_not_make_are_refused(ext, name, converted, tmp_path, no_loading, capsys):
    """A recording (or a symlink to one) named like an item: before, replaced without a word; now exit 2 before
    loading, naming the file and the fix; with --overwrite it is replaced."""
    manifest, out = write_manifest(str(tmp_path), ROWS[:2]), tmp_path / "out"
    out.mkdir()
    (tmp_path / "interview.wav").write_bytes(b"someone's recording")
    if name == "link":
        name = "short-2.wav"
        os.symlink(tmp_path / "interview.wav", out / name)
    else:
        (out / name).write_bytes(b"someone's recording")
    err = usage_error(command(manifest, str(out), converted, "--format", ext), capsys)
    assert f"{out / name} is in --out-dir but no manifest line of this job records it" in err, err
    assert "--overwrite" in err and (out / name).read_bytes() == b"someone's recording"
    with pytest.raises(AssertionError, match="a model was loaded"):  # past the checks: it would be made
        cli.main([*command(manifest, str(out), converted, "--format", ext), "--overwrite", "--debug"])


def test_a_manifest_line_cut_short_by_a_full_disk_is_an_error(tmp_path, monkeypatch):
    """os.write may take part of a line without an error (a full disk): the item must not count as recorded."""
    from nanobark.cli.corpus import append_line

    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(OSError, match=r"cut short \(10 of \d+ bytes written\)"):
        append_line(tmp_path / "m.jsonl", {"id": "a", "file": "a.wav"})


# ---- issue 18, from a new user's walkthrough: --voice and --long fill in what a row leaves out


def test_voice_and_long_flags_are_the_defaults_of_rows_without_their_own(bark, converted, tmp_path, monkeypatch):
    monkeypatch.setattr(Bark, "from_pretrained", lambda *a, **k: bark)
    rows = [{"id": "plain", "text": "Hello."}, {"id": "own", "text": "Hello.", "voice": "en_speaker_1"}]
    out = str(tmp_path / "out")
    argv = command(write_manifest(str(tmp_path), rows), out, converted, "--voice", "v2/en_speaker_6", "--long")
    assert cli.main([*argv, "--quiet"]) == 0
    lines = manifest_lines(out)
    assert lines["plain"]["voice"] == "v2/en_speaker_6" and lines["own"]["voice"] == "en_speaker_1"
    assert lines["plain"]["settings"]["long"] and lines["own"]["settings"]["long"]  # --long, for both
    # the audio is what the voice gives: the item alone, through generate_long with its seed
    audio = generate_long(bark, "Hello.", "v2/en_speaker_6", seed=lines["plain"]["seed"], max_duration=0.2)
    np.testing.assert_array_equal(sf.read(os.path.join(out, "plain.wav"), dtype="int16")[0], pcm16(audio))


def test_an_unknown_default_voice_is_a_usage_error_before_loading(converted, tmp_path, no_loading, capsys):
    argv = command(write_manifest(str(tmp_path), ROWS[:1]), str(tmp_path / "o"), converted, "--voice", "v2/en_speakr_6")
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--voice: unknown voice preset 'v2/en_speakr_6'" in err and "v2/en_speaker_6" in err


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "..", ".", ".hidden", " a"])
def test_an_id_that_is_not_exactly_one_file_name_in_out_dir_is_refused(bad):
    """An id names one file in --out-dir on every system: a backslash is a separator on Windows."""
    from nanobark.cli.manifest import RowError, check_id

    with pytest.raises(RowError, match="id"):
        check_id(bad)


# ---- a finished distributed job exits 0

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
LEFT_THREADS = """import os, sys
from nanobark import Bark
from nanobark.cli.corpus import Ranks

ranks = Ranks().start()
Bark.from_pretrained(sys.argv[1], device="cpu")  # imports torch._dynamo, and torch.distributed.nn with it
ranks.stop(finished=True)
print(sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="the thread list is read from /proc")
def test_leaving_the_process_group_ends_its_threads(converted, tmp_path):
    """A group that outlives Ranks.stop keeps gloo's threads into the interpreter's exit, whose teardown of them
    sometimes aborted a finished job (SIGABRT): after stop, each rank is one thread again."""
    script = tmp_path / "left_threads.py"
    script.write_text(LEFT_THREADS)
    r = run(*TORCHRUN, script, converted)
    assert r.returncode == 0, r.stderr
    threads = r.stdout.splitlines()  # a list of thread names per rank
    assert len(threads) == 2 and "gloo" not in r.stdout, threads  # no gloo_tcp_loop, no pt_gloo_runloop


@pytest.mark.slow
def test_a_finished_two_process_job_exits_0_every_time(converted, tmp_path):
    manifest = write_manifest(str(tmp_path), [ROWS[0], ROWS[1], ROWS[7]])
    for i in range(3):
        r = run(*TORCHRUN, "-m", "nanobark", *command(manifest, str(tmp_path / f"out{i}"), converted, "--quiet"))
        assert r.returncode == 0, f"run {i}: exit {r.returncode}\n{r.stderr[-2000:]}"
        assert "3 rows: 3 done, 0 failed" in r.stdout


# ---- issue 18: a manifest is read with a size limit that holds for devices, FIFOs and links to them


def test_an_endless_or_oversized_manifest_is_a_usage_error_before_loading(
    converted, tmp_path, no_loading, capsys, monkeypatch
):
    """Before: `nanobark synthesize /dev/zero` (or a link to it) read until memory ran out, deaf to SIGTERM, and
    a FIFO with no writer hung in open()."""
    from helpers import endless_inputs
    from nanobark.cli import manifest

    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 4096, raising=False)  # the oversized file: over it
    out = str(tmp_path / "out")
    inputs = [*endless_inputs(str(tmp_path), "corpus.jsonl", oversized=4097), ("device", "/dev/zero")]
    for kind, path in inputs:
        err = usage_error(command(path, out, converted), capsys)
        said = "larger than" if kind == "oversized" else "not a regular file"
        assert said in err and path in err, (kind, err)
        with pytest.raises(ManifestError, match=said):  # the owner, from Python
            read_manifest(path)


def test_a_job_file_in_out_dir_that_is_endless_is_a_usage_error_before_loading(converted, tmp_path, no_loading, capsys):
    """Before: corpus.read_jsonl read out/manifest.jsonl whole (a link to /dev/zero: until memory ran out; a
    FIFO: open() hung); now read_bounded reads it, as the input manifest."""
    from helpers import endless_inputs

    manifest = write_manifest(str(tmp_path))
    for kind, path in endless_inputs(str(tmp_path), "manifest.jsonl", oversized=1):
        if kind != "oversized":
            err = usage_error(command(manifest, os.path.dirname(path), converted), capsys)
            assert "the job's file" in err and "is not a regular file" in err and path in err, (kind, err)


def test_a_voice_file_with_a_forged_header_fails_its_row_only(converted, tmp_path, no_loading, capsys):
    forged_npz(tmp_path / "huge.npz", npy_header("{'descr': '<i8', 'fortran_order': False, 'shape': (68719476736,)}"))
    manifest = write_manifest(str(tmp_path), [{"id": "a", "text": "Hi", "voice": "huge.npz"}, {"id": "b"}])
    out = str(tmp_path / "out")
    assert cli.main(command(manifest, out, converted)) == 1  # was an abort before the summary (MemoryError)
    captured = capsys.readouterr()
    assert "2 rows: 0 done, 2 failed, 0 skipped" in captured.out
    assert "huge.npz has an array header declaring" in captured.err


def test_silence_flag_is_the_default_of_long_rows_without_their_own(bark, converted, tmp_path, monkeypatch):
    """Before: synthesize had no --silence (nor a column): every long item had generate_long's 0.25 s."""
    monkeypatch.setattr(Bark, "from_pretrained", lambda *a, **k: bark)
    story = (  # two sentences of 25 and 29 tokens: two segments
        "Hello, my dog is cute, and the dog said hello to the world, and the world said hello to the dog. "
        "She said hello to my dog, and my dog said hello to her and to the cute world of the cute dog, he said."
    )
    rows = [{"id": "plain", "text": story}, {"id": "own", "text": story, "silence": 0}, {"id": "short", "text": "Hi"}]
    out = str(tmp_path / "out")
    argv = command(write_manifest(str(tmp_path), rows), out, converted, "--long", "--silence", "1.5", "--quiet")
    assert cli.main(argv) == 0
    lines = manifest_lines(out)
    assert [lines[i]["settings"]["silence"] for i in ("plain", "own", "short")] == [1.5, 0.0, 1.5]
    audio = generate_long(bark, story, seed=lines["plain"]["seed"], max_duration=0.2, silence=1.5)
    np.testing.assert_array_equal(sf.read(os.path.join(out, "plain.wav"), dtype="int16")[0], pcm16(audio))
    rows, problems = read_manifest(write_manifest(str(tmp_path), [{"id": "a", "text": "Hi", "silence": 61}]))
    assert "line 1: silence must be a number of seconds from 0 to 60" in problems[0].message
