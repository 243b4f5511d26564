"""Finding a model offline and keeping nanobark's cache tidy: an unreachable Hub fails at once (no retry
loop), a cache filled by transformers is used without the network, a preset that would need downloading says
so by name, a damaged preset index only matters to whoever asks for a voice, and a touched snapshot is not
converted twice."""

import json
import os
import shutil
import socket

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from helpers import ENV, run, write_hf_cache
from nanobark import Bark
from nanobark.voices import PresetDownloadError, VoiceError
from nanobark.weights.checkpoint import CheckpointError, load_stage, read_meta
from nanobark.weights.hub import convert_once, is_current

HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
# connections one step may try: one request (2 here); huggingface_hub's retry loop made 9 (~25 s), which
# counting catches however slow the machine is
RETRY_FREE = 3
NOT_CACHED = "v2/zh_speaker_9"  # a preset listed in speaker_embeddings_path.json whose files are not cached


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBARK_CACHE", str(tmp_path / "nanobark"))
    return tmp_path / "nanobark"


def closed_port():
    """A local port nothing listens on: connecting is refused at once, like a Hub that cannot be reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# loads suno/bark-small, then generates with each voice in argv[2:] ("" for none); prints what happened as JSON,
# with the connections each step tried to open: a retry loop shows as several, whatever the machine's speed
CHILD = r"""
import json, socket, sys, time
import numpy as np
from nanobark import Bark

connects, real_connect = [], socket.socket.connect

def counted_connect(self, address):
    if self.family != socket.AF_UNIX:
        connects.append(address)
    return real_connect(self, address)

socket.socket.connect = counted_connect

def attempt(f):
    start, value, error, before = time.monotonic(), None, None, len(connects)
    try:
        value = f()
    except Exception as e:
        error = e
    chained = bool(error and (error.__cause__ or error.__context__ and not error.__suppress_context__))
    return value, {"seconds": time.monotonic() - start, "connects": len(connects) - before,
                   "error": error and [c.__name__ for c in type(error).__mro__], "message": str(error),
                   "chained": chained}

bark, report = attempt(lambda: Bark.from_pretrained("suno/bark-small", device="cpu"))
reports, audio = [report], {}
for i, voice in enumerate(sys.argv[2:] if bark else []):
    audio[str(i)], report = attempt(lambda: bark.generate("Hello dog", voice=voice or None, seed=3, max_duration=0.3))
    reports.append(report)
np.savez(sys.argv[1], **{k: v for k, v in audio.items() if v is not None})
print(json.dumps(reports))
"""


def run_child(tmp_path, env, *voices):
    """Run CHILD in a fresh process (huggingface_hub reads its variables at import) -> (reports, audio)."""
    env = {k: v for k, v in ENV.items() if k not in HUB_VARIABLES} | env
    out = tmp_path / "audio.npz"
    p = run("-c", CHILD, out, *voices, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    with np.load(out) as audio:
        return json.loads(p.stdout.splitlines()[-1]), {int(k): audio[k] for k in audio.files}


def offline_env(mode, hf_home, cache):
    """HF_HUB_OFFLINE=1, or a Hub endpoint that refuses connections (no network, HF_HUB_OFFLINE unset)."""
    hub = (
        {"HF_HUB_OFFLINE": "1"} if mode == "HF_HUB_OFFLINE=1" else {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    )
    return {"HF_HOME": str(hf_home), "NANOBARK_CACHE": str(cache), **hub}


@pytest.mark.slow
def test_unreachable_hub_without_cache_fails_fast_and_says_what_to_do(tmp_path):
    """Before: huggingface_hub retried for ~25 s (5 retries, 1+2+4+8+8 s) before the error."""
    env = offline_env("unreachable", tmp_path / "hf_home", tmp_path / "nanobark")
    [load], _ = run_child(tmp_path, env)
    assert "ConnectionError" in load["error"] and not load["chained"], load
    for advice in ("cannot be reached", "--model FOLDER", "on first use"):
        assert advice in load["message"], load["message"]
    assert load["connects"] <= RETRY_FREE, load  # one request, no retry loop


def test_offline_hub_id_without_cache_says_what_to_do(cache, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 would
    # an empty huggingface_hub cache, whatever this machine's holds
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE=1 is set.*--model FOLDER"):
        Bark.from_pretrained("suno/bark-small")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["HF_HUB_OFFLINE=1", "unreachable"])
def test_a_cache_filled_by_transformers_is_used_offline(hf_cache, converted, cache, tmp_path, mode):
    """pytorch_model.bin on main, no model.safetensors (refs/pr/5): converted once, presets read from the cache."""
    reports, audio = run_child(tmp_path, offline_env(mode, hf_cache, cache), "", "v2/en_speaker_6")
    assert not any(r["error"] for r in reports), reports
    # no ~25 s retry loop on the way (before: ~23 s, unreachable, for the safetensors file of refs/pr/5)
    assert reports[0]["connects"] <= RETRY_FREE and reports[2]["connects"] <= RETRY_FREE, reports
    bark = Bark.from_pretrained(converted, device="cpu")  # the same snapshot, loaded from its folder
    for i, voice in enumerate([None, "v2/en_speaker_6"]):
        want = bark.generate("Hello dog", voice=voice, seed=3, max_duration=0.3)
        np.testing.assert_allclose(audio[i], want, rtol=0, atol=1e-5)  # same tokens; the threads differ
    assert sorted(os.listdir(cache)) == ["suno--bark-small", "suno--bark-small.lock"]  # no other copy


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["HF_HUB_OFFLINE=1", "unreachable"])
def test_a_preset_to_download_while_offline_says_which_and_what_to_do(hf_snapshot, cache, tmp_path, mode):
    """Before: huggingface_hub's LocalEntryNotFoundError about one .npy file (after ~25 s of retries, unreachable)."""
    hf_home = write_hf_cache(hf_snapshot, str(tmp_path / "hf_home"), leave_out=[f"speaker_embeddings/{NOT_CACHED}"])
    reports, audio = run_child(tmp_path, offline_env(mode, hf_home, cache), NOT_CACHED, "v2/en_speaker_6")
    load, missing, cached = reports
    assert not load["error"] and not cached["error"] and len(audio[1]), reports
    assert missing["error"][:2] == [PresetDownloadError.__name__, "ConnectionError"], missing
    assert not missing["chained"]  # no huggingface_hub error in the traceback
    for said in (
        f"voice preset {NOT_CACHED!r}",
        "on first use",
        "connect to the internet once",
        ".npz",
        "speaker_embeddings/",
    ):
        assert said in missing["message"], missing["message"]
    assert missing["connects"] <= RETRY_FREE, missing


@pytest.mark.parametrize(
    "content, said",
    [
        (b"{not json", "cannot be read as JSON"),
        (b"\xff\xfe{}", "cannot be read as JSON"),  # not UTF-8
        (b"[1, 2]", "holds a JSON list, not an object of preset name -> files"),
        (b'{"x": {"semantic_prompt": "a.npy"}}', "preset 'x' must list exactly"),
    ],
    ids=["not-json", "not-utf8", "a-list", "an-entry-without-3-files"],
)
def test_a_broken_preset_index_matters_only_when_a_voice_is_used(converted, tmp_path, content, said):
    """Before: from_pretrained parsed speaker_embeddings_path.json and failed (JSONDecodeError), voice or not."""
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    (model / "speaker_embeddings_path.json").write_bytes(content)
    bark = Bark.from_pretrained(str(model), device="cpu")
    assert len(bark.generate("Hello", seed=0, max_duration=0.1))
    with pytest.raises(VoiceError, match=said) as e:
        bark.generate("Hello", voice="v2/en_speaker_6", seed=0, max_duration=0.1)
    assert str(model / "speaker_embeddings_path.json") in str(e.value)


def test_a_touched_or_changed_snapshot_is_converted_again_in_place(hf_snapshot, cache, tmp_path):
    """Before: the cache folder was keyed by the weights' size and time, so a touch made a second full copy."""
    snapshot = tmp_path / "snapshot"
    shutil.copytree(hf_snapshot, snapshot)
    weights = snapshot / "model.safetensors"

    def load():
        bark = Bark.from_pretrained(str(snapshot), device="cpu")
        assert len(os.listdir(cache / "local")) == 2  # one copy and its lock file, no temporary folder
        return bark.models["semantic"].lm_head.weight.clone()

    first = load()
    os.utime(weights, ns=(os.stat(weights).st_atime_ns, os.stat(weights).st_mtime_ns + 10**9))  # touch
    np.testing.assert_array_equal(load(), first)
    state = load_file(weights)
    state["semantic.lm_head.weight"] += 1  # new content
    save_file(state, weights, metadata={"format": "pt"})
    np.testing.assert_array_equal(load(), first + 1)


def test_hub_id_downloads_safetensors_converts_once_and_fetches_only_the_asked_preset(hf_snapshot, cache, monkeypatch):
    """A stand-in for the Hub serving the snapshot: bark-small's weights come from refs/pr/5."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    import nanobark.weights.hub as hub

    calls = []

    def fake_hub(repo_id, filename, revision=None, local_files_only=False, **kw):
        path = os.path.join(hf_snapshot, filename)
        if local_files_only and filename.startswith("speaker_embeddings/"):  # not cached yet: ask the Hub
            raise LocalEntryNotFoundError(f"{filename} is not cached")
        calls.append((repo_id, filename, revision))
        if (
            filename == "pytorch_model.bin"
            or not os.path.exists(path)
            or (filename == "model.safetensors" and revision != "refs/pr/5")
        ):
            raise not_on_hub(f"{filename} is not in {repo_id}@{revision}")
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hub)
    monkeypatch.setattr(hub, "why_offline", lambda repo_id, filename="config.json": None)  # the Hub answers
    bark = Bark.from_pretrained("suno/bark-small", device="cpu")
    assert ("suno/bark-small", "model.safetensors", "refs/pr/5") in calls
    assert not any(f.startswith("speaker_embeddings/") for _, f, _ in calls)
    assert sorted(os.listdir(cache)) == ["suno--bark-small", "suno--bark-small.lock"]  # no link folder
    calls.clear()
    bark.generate("Hello", voice="v2/en_speaker_6", seed=0, max_duration=0.1)
    assert sorted(f for _, f, _ in calls) == [
        f"speaker_embeddings/v2/en_speaker_6_{k}_prompt.npy" for k in ("coarse", "fine", "semantic")
    ]
    calls.clear()
    Bark.from_pretrained("suno/bark-small", device="cpu")
    assert calls == []  # the converted copy in nanobark's cache is used as it is


def not_on_hub(message):
    """huggingface_hub's "the Hub has no such file" (a 404), made without an HTTP response."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    err = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)
    Exception.__init__(err, message)
    return err


@pytest.mark.parametrize(
    "cached, offline, on_hub, outcome, asked",
    [
        (True, "HF_HUB_OFFLINE=1 is set", True, "the file", []),  # a cached file: the network is not asked
        (False, "HF_HUB_OFFLINE=1 is set", True, ConnectionError, ["why_offline"]),  # at once, no download
        (False, None, True, "the file", ["why_offline", "download"]),
        (False, None, False, FileNotFoundError, ["why_offline", "download"]),
    ],
)
def test_fetch_file_takes_the_cache_first_and_asks_the_hub_only_when_it_answers(
    monkeypatch, cached, offline, on_hub, outcome, asked
):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    import nanobark.weights.hub as hub

    calls = []

    def fake_hub(repo_id, filename, revision=None, local_files_only=False):
        if local_files_only and not cached:
            raise LocalEntryNotFoundError(f"{filename} is not cached")
        if not local_files_only:
            calls.append("download")
            if not on_hub:
                raise not_on_hub(f"{filename} is not in {repo_id}")
        return "the file"

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hub)
    monkeypatch.setattr(hub, "why_offline", lambda repo_id, filename: calls.append("why_offline") or offline)
    if isinstance(outcome, str):
        assert hub.fetch_file("suno/bark-small", "config.json") == outcome
    else:
        with pytest.raises(outcome, match="config.json"):
            hub.fetch_file("suno/bark-small", "config.json")
    assert calls == asked


def test_an_unreachable_hub_is_asked_once_a_minute(monkeypatch):
    """Offline, each file that is not cached used to wait for its own request (up to 10 s each)."""
    import huggingface_hub

    import nanobark.weights.hub as hub

    requests = []

    def refused(*a, **k):
        requests.append(a)
        raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refused)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_unreachable", (float("-inf"), None))
    reasons = [hub.why_offline("suno/bark-small", name) for name in ("config.json", "vocab.txt")]
    assert reasons[0] == reasons[1] and "cannot be reached (OSError)" in reasons[0] and len(requests) == 1


def test_a_same_size_rewrite_within_one_second_changes_the_source_stamp(tmp_path):
    """The cache reconverts a local snapshot when its files change: a rewrite of the same size in the same second
    (a script regenerating the weights) must change the stamp, so it is kept to the nanosecond."""
    from nanobark.weights.hub import source_stamp

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 100)
    os.utime(path, ns=(1_700_000_000_100_000_000, 1_700_000_000_100_000_000))
    before = source_stamp(tmp_path)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(1_700_000_000_900_000_000, 1_700_000_000_900_000_000))  # 0.8 s later, the same second
    assert source_stamp(tmp_path) != before


def test_a_folder_of_an_older_format_is_refused_and_the_cache_converts_it_again(converted, hf_snapshot, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(converted, old)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps(dict(config, format_version=1)))
    with pytest.raises(CheckpointError, match=r"converted by another nanobark \(format 1; this one reads format 2\)"):
        Bark.from_pretrained(str(old), device="cpu")
    cached = tmp_path / "cache" / "suno--bark-small"  # as the Hub path leaves it after an upgrade of nanobark
    shutil.copytree(old, cached)
    assert convert_once(hf_snapshot, str(cached)) == str(cached) and is_current(str(cached))
    assert json.loads((cached / "config.json").read_text())["format_version"] == 2


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"NANOBARK_CACHE": "", "XDG_CACHE_HOME": ""}, "~/.cache/nanobark"),
        ({"NANOBARK_CACHE": "", "XDG_CACHE_HOME": "/x/cache"}, "/x/cache/nanobark"),
        ({"NANOBARK_CACHE": "/y/nb", "XDG_CACHE_HOME": ""}, "/y/nb"),
    ],
)
def test_an_empty_cache_variable_counts_as_unset(env, expected, monkeypatch):
    from nanobark.weights.hub import cache_root

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cache_root() == os.path.expanduser(expected)  # never "" (the working directory)


def test_unfinished_folder_in_the_way_is_replaced(hf_snapshot, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "semantic.safetensors").write_bytes(b"half")  # a conversion by hand, killed before config.json
    convert_once(hf_snapshot, str(target))
    assert read_meta(str(target)) is not None and load_stage(str(target), "semantic")
