"""`nanobark prepare` (nanobark/cli/prepare.py): clips and their texts -> the token files fine-tuning reads, with
the semantic ids and codes that voice cloning makes of the same recording, every bad clip or row named by its
line, resumable, and the same files from two torchrun processes as from one. Random weights (a full-size
HuBERT, as test_cloning's), synthetic speech."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

import nanobark.cli as cli
from helpers import leftovers, run, speech, usage_error
from nanobark.cloning import clone_voice
from nanobark.tokenizer import Tokenizer, normalize_text

GOOD = {  # id -> (text, seconds, sample rate, channels)
    "stereo": ("Hello, my dog is cute.", 3.0, 44_100, 2),
    "mono": ("She said hello to the world.", 2.0, 16_000, 1),
    "third": ("The dog said hello.", 1.5, 24_000, 1),
}


@pytest.fixture(scope="module", autouse=True)
def _cache(cache):
    """the converted HuBERT and quantizer go into `cache` (conftest.py's)."""


@pytest.fixture(scope="module")
def weights(cloning_sources):
    hubert, quantizer_dir = cloning_sources
    return hubert, os.path.join(quantizer_dir, "quantifier_hubert_base_ls960_14.pth")


def write_clip(folder, name, seconds, rate, channels, seed=0):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, speech(seconds, rate, channels, seed=seed), rate)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder with clips, good and bad, and clips.jsonl naming them; -> (manifest, {line: what is wrong})."""
    root = tmp_path_factory.mktemp("prepare")
    folder = root / "corpus"
    rows = []
    for i, (id_, (text, seconds, rate, channels)) in enumerate(GOOD.items()):
        write_clip(str(folder), f"wavs/{id_}.{'flac' if rate == 16_000 else 'wav'}", seconds, rate, channels, seed=i)
        rows.append({"id": id_, "text": text, "audio": f"wavs/{id_}.{'flac' if rate == 16_000 else 'wav'}"})
    write_clip(str(folder), "wavs/short.wav", 0.5, 24_000, 1)
    write_clip(str(folder), "wavs/long.wav", 16.0, 16_000, 1)
    sf.write(folder / "wavs" / "silent.wav", np.zeros(24_000 * 2, np.float32), 24_000)
    (folder / "wavs" / "text.wav").write_text("not audio at all")
    outside = write_clip(str(root), "outside.wav", 2.0, 24_000, 1)
    os.symlink(outside, folder / "wavs" / "link.wav")
    bad = {  # line -> (row, what errors.jsonl says)
        4: ({"id": "short", "text": "Hello.", "audio": "wavs/short.wav"}, "cloning needs at least 1 s"),
        5: ({"id": "long", "text": "Hello.", "audio": "wavs/long.wav"}, "16.00 s long, over the 15 s allowed"),
        6: ({"id": "silent", "text": "Hello.", "audio": "wavs/silent.wav"}, "is silent"),
        7: ({"id": "unreadable", "text": "Hello.", "audio": "wavs/text.wav"}, "not an audio file"),
        8: ({"id": "missing", "text": "Hello.", "audio": "wavs/none.wav"}, "no such audio file"),
        9: ({"id": "up", "text": "Hello.", "audio": "../outside.wav"}, "is outside the manifest's folder"),
        10: ({"id": "absolute", "text": "Hello.", "audio": outside}, "is outside the manifest's folder"),
        11: ({"id": "link", "text": "Hello.", "audio": "wavs/link.wav"}, "is outside the manifest's folder"),
        12: ({"id": "wordy", "text": "Hello " * 300, "audio": "wavs/stereo.wav"}, "300 tokens, over the 256"),
        13: ({"id": "no-audio", "text": "Hello."}, "no audio"),
        14: (
            {"id": "voice", "text": "Hello.", "audio": "wavs/mono.flac", "voice": "v2/en_speaker_6"},
            "unknown column",
        ),
        15: ({"id": "nul", "text": "Hello.", "audio": "wavs/a\u0000.wav"}, "holds a NUL character"),
    }
    rows += [row for row, _ in bad.values()]
    manifest = folder / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(manifest), {line: said for line, (_, said) in bad.items()}


def command(manifest, out, model, weights, *extra):
    hubert, quantizer = weights
    return ["prepare", manifest, "--out-dir", out, "--model", model, "--hubert", hubert, "--quantizer", quantizer,
            "--quiet", *extra]  # fmt: skip


def tokens(out, id_):
    with np.load(os.path.join(out, "tokens", f"{id_}.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def prepared(corpus, converted, weights, tmp_path_factory, one_thread):
    out = str(tmp_path_factory.mktemp("out") / "prepared")
    assert cli.main(command(corpus[0], out, converted, weights)) == 0
    return out


def test_each_clip_has_the_ids_and_codes_that_cloning_makes_of_it(prepared, corpus, converted, weights):
    folder = os.path.dirname(corpus[0])
    tokenizer = Tokenizer.from_dir(converted)
    assert sorted(os.listdir(os.path.join(prepared, "tokens"))) == sorted(f"{i}.npz" for i in GOOD)
    for id_, (text, seconds, rate, _) in GOOD.items():
        got = tokens(prepared, id_)
        assert sorted(got) == ["codes", "semantic", "text"] and all(a.dtype == np.int64 for a in got.values())
        np.testing.assert_array_equal(got["text"], tokenizer.encode(normalize_text(text)))
        assert got["codes"].shape == (8, -(-round(seconds * 24_000) // 320))  # 75 frames a second
        assert got["codes"].max() < 1024 and got["semantic"].max() < 10_000 and len(got["semantic"]) > 40 * seconds
        audio = os.path.join(folder, "wavs", f"{id_}.{'flac' if rate == 16_000 else 'wav'}")
        voice = clone_voice(converted, audio, hubert=weights[0], quantizer=weights[1])  # all of it: under 256 ids
        np.testing.assert_array_equal(voice["semantic_prompt"], got["semantic"])
        frames = voice["fine_prompt"].shape[1]  # the span of the semantic ids, to a frame
        assert frames >= got["codes"].shape[1] - 2
        np.testing.assert_array_equal(voice["fine_prompt"], got["codes"][:, -frames:])


def test_every_bad_clip_and_row_is_named_by_its_line_and_the_rest_are_done(prepared, corpus):
    manifest, bad = corpus
    with open(os.path.join(prepared, "errors.jsonl"), encoding="utf-8") as f:
        errors = [json.loads(line) for line in f]
    assert [e["line"] for e in errors] == sorted(bad)
    for e in errors:
        assert e["error"].startswith(f"{manifest} line {e['line']}: ") and bad[e["line"]] in e["error"], e
    with open(os.path.join(prepared, "manifest.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert [e["id"] for e in lines] == list(GOOD) and all(e["file"] == f"tokens/{e['id']}.npz" for e in lines)
    assert set(lines[0]) == {"id", "file", "text", "audio", "model", "duration", "seconds"}
    assert lines[0]["audio"] == "wavs/stereo.wav" and lines[0]["duration"] == pytest.approx(3.0, abs=0.02)
    assert leftovers(prepared) == [] and leftovers(os.path.join(prepared, "tokens")) == []


def test_a_rerun_skips_what_is_done_and_makes_a_cut_file_again(prepared, corpus, converted, weights, capsys):
    before = {i: tokens(prepared, i) for i in GOOD}
    mtimes = {i: os.stat(os.path.join(prepared, "tokens", f"{i}.npz")).st_mtime_ns for i in GOOD}
    capsys.readouterr()
    # only the bad clips were tried, and failed again: exit 1, as synthesize does when every item tried failed
    assert cli.main(command(corpus[0], prepared, converted, weights)) == 1
    assert f"0 done, {len(corpus[1])} failed, {len(GOOD)} skipped" in capsys.readouterr().out
    cut = os.path.join(prepared, "tokens", "mono.npz")
    with open(cut, "r+b") as f:  # a full disk or a copy cut short
        f.truncate(os.path.getsize(cut) // 2)
    killed = os.path.join(prepared, "tokens", ".third.npz.0123456789ab.tmp")  # what a killed write leaves
    open(killed, "wb").close()
    assert cli.main(command(corpus[0], prepared, converted, weights)) == 0
    assert not os.path.exists(killed)
    assert f"1 done, {len(corpus[1])} failed, {len(GOOD) - 1} skipped" in capsys.readouterr().out
    for i in GOOD:
        after = tokens(prepared, i)
        assert all(np.array_equal(after[k], before[i][k]) for k in after)
        same = os.stat(os.path.join(prepared, "tokens", f"{i}.npz")).st_mtime_ns == mtimes[i]
        assert same == (i != "mono"), i


def test_a_file_it_did_not_make_is_not_overwritten_and_plain_text_is_refused(
    corpus, converted, weights, tmp_path, capsys
):
    out = tmp_path / "out"
    (out / "tokens").mkdir(parents=True)
    (out / "tokens" / "mono.npz").write_bytes(b"someone's own file")
    err = usage_error(command(corpus[0], str(out), converted, weights), capsys)
    assert "mono.npz is in --out-dir but no manifest line of this job records it" in err
    text = tmp_path / "clips.txt"
    text.write_text("Hello.\n")
    err = usage_error(command(str(text), str(tmp_path / "o2"), converted, weights), capsys)
    assert "a training manifest is .jsonl, .csv or .tsv, with the columns id, text, audio" in err
    table = tmp_path / "clips.tsv"
    table.write_text("id\ttext\nclip1\tHello.\n")
    err = usage_error(command(str(table), str(tmp_path / "o3"), converted, weights), capsys)
    assert "line 1: the header has no audio column; it needs id, text and audio" in err


@pytest.mark.slow
def test_two_processes_make_the_same_files_as_one(prepared, corpus, converted, weights, tmp_path):
    out2 = str(tmp_path / "two")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "nanobark"]
    r = run(*torchrun, *command(corpus[0], out2, converted, weights)[:-1])  # with the progress lines
    assert r.returncode == 0, r.stderr
    assert f"{len(GOOD) + len(corpus[1])} rows: {len(GOOD)} done, {len(corpus[1])} failed" in r.stdout
    assert "rank 0:" in r.stderr and "rank 1:" in r.stderr  # both worked
    for i in GOOD:
        one, two = tokens(prepared, i), tokens(out2, i)
        assert all(np.array_equal(one[k], two[k]) for k in one), i
    for name in ("manifest.jsonl", "errors.jsonl"):
        with open(os.path.join(prepared, name)) as a, open(os.path.join(out2, name)) as b:
            lines = [[{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in f] for f in (a, b)]
        assert lines[0] == lines[1]
    assert leftovers(out2) == []
