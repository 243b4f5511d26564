"""Voice prompts: Suno's 271 real presets, the Hub `.npy` layout, every rejection, and saving."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import forged_npz, npy_header, npz_voice, references
from nanobark.voices import (
    KEYS,
    PresetIndex,
    VoiceError,
    VoiceFileNotFoundError,
    find_voice,
    load_voice,
    save_voice,
    validate_voice,
)

references(module_level=True)
from bark.generation import _load_history_prompt  # noqa: E402  (after the stand-in for torchaudio)

from weights_convert.references import suno_prompts  # noqa: E402

SUNO_PROMPTS = suno_prompts()
HUB_SAMPLE = ["v2/en_speaker_6", "en_speaker_6", "announcer"]


def suno_npz(name):
    with np.load(os.path.join(SUNO_PROMPTS, name + ".npz")) as z:
        return {k: z[k] for k in z.files}


def parts(voice):
    return [voice[k] for k in KEYS]


def assert_same_voice(got, want):
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert got[k].dtype == np.int64
        np.testing.assert_array_equal(got[k], want[k])


@pytest.fixture(scope="module")
def suno_index():
    return PresetIndex.from_npz_dir(SUNO_PROMPTS)


def write_hub_tree(root, names):
    """The Hub layout: speaker_embeddings_path.json plus speaker_embeddings/<name>_<key>.npy."""
    table = {"repo_or_path": "ylacombe/bark-small"}
    for name in names:
        table[name] = {}
        for k, a in suno_npz(name).items():
            rel = f"speaker_embeddings/{name}_{k}.npy"
            os.makedirs(os.path.dirname(root / rel), exist_ok=True)
            np.save(root / rel, a)
            table[name][k] = rel
    (root / "speaker_embeddings_path.json").write_text(json.dumps(table))


# ---- the real presets


def test_all_271_suno_presets_validate_and_load(suno_index):
    names = suno_index.names()
    assert len(names) == 271 and {"announcer", "speaker_0", "en_speaker_6", "v2/zh_speaker_9"} <= set(names)
    for name in names:
        assert_same_voice(suno_index.load(name), suno_npz(name))


@pytest.mark.parametrize("name", ["v2/en_speaker_6", "en_speaker_6", "announcer", "v2\\en_speaker_6"])
def test_names_match_suno_loader(suno_index, name):
    assert_same_voice(load_voice(name, presets=suno_index), _load_history_prompt(name.replace("\\", "/")))


def test_announcer_uint16_is_accepted():
    raw = suno_npz("announcer")
    assert raw["semantic_prompt"].dtype == np.uint16
    assert_same_voice(validate_voice(raw), raw)


def test_load_voice_inputs():
    raw = suno_npz("v2/en_speaker_6")
    assert load_voice(None) is None
    assert_same_voice(load_voice(raw), raw)
    path = os.path.join(SUNO_PROMPTS, "v2", "en_speaker_6.npz")
    assert_same_voice(load_voice(path), raw)
    assert_same_voice(load_voice(Path(path)), raw)


def test_validate_returns_fresh_arrays():
    raw = {k: v.astype(np.int64) for k, v in suno_npz("v2/en_speaker_6").items()}
    out = validate_voice(raw)
    assert not any(np.shares_memory(out[k], raw[k]) for k in KEYS)


# ---- the Hub layout


def test_hub_layout_loads_identical_arrays(tmp_path):
    write_hub_tree(tmp_path, HUB_SAMPLE)
    index = PresetIndex.from_dir(tmp_path)
    assert index.names() == sorted(HUB_SAMPLE)
    for name in HUB_SAMPLE:
        assert_same_voice(index.load(name), suno_npz(name))
    assert_same_voice(load_voice("v2\\en_speaker_6", presets=index), suno_npz("v2/en_speaker_6"))


@pytest.mark.parametrize("json_local", [True, False])
def test_fetch_downloads_only_the_asked_preset(tmp_path, json_local):
    remote, local = tmp_path / "remote", tmp_path / "local"
    remote.mkdir(), local.mkdir()
    write_hub_tree(remote, HUB_SAMPLE)
    if json_local:
        shutil.copy(remote / "speaker_embeddings_path.json", local)
    asked = []

    def fetch(rel):
        asked.append(rel)
        return str(remote / rel)

    index = PresetIndex.from_dir(local, fetch=fetch)
    assert asked == ([] if json_local else ["speaker_embeddings_path.json"])
    asked.clear()
    assert_same_voice(index.load("v2/en_speaker_6"), suno_npz("v2/en_speaker_6"))
    assert sorted(asked) == sorted(f"speaker_embeddings/v2/en_speaker_6_{k}.npy" for k in KEYS)


def test_hub_layout_missing_files(tmp_path):
    with pytest.raises(VoiceFileNotFoundError, match="speaker_embeddings_path.json"):
        PresetIndex.from_dir(tmp_path)
    write_hub_tree(tmp_path, ["en_speaker_6"])
    os.remove(tmp_path / "speaker_embeddings" / "en_speaker_6_fine_prompt.npy")
    with pytest.raises(VoiceFileNotFoundError, match="en_speaker_6_fine_prompt.npy"):
        PresetIndex.from_dir(tmp_path).load("en_speaker_6")


@pytest.mark.parametrize("rel", ["../../secret.npy", "/etc/secret.npy", "speaker_embeddings/x.txt", 3])
def test_hub_json_paths_must_stay_inside(tmp_path, rel):
    entry = {k: f"speaker_embeddings/x_{k}.npy" for k in KEYS}
    entry["fine_prompt"] = rel
    (tmp_path / "speaker_embeddings_path.json").write_text(json.dumps({"x": entry}))
    with pytest.raises(VoiceError, match="refusing file path"):
        PresetIndex.from_dir(tmp_path).names()  # the index is read on first use


def test_hub_json_entry_needs_three_keys(tmp_path):
    (tmp_path / "speaker_embeddings_path.json").write_text(json.dumps({"x": {"semantic_prompt": "a.npy"}}))
    with pytest.raises(VoiceError, match="'x' must list exactly"):
        PresetIndex.from_dir(tmp_path).load("x")


# ---- rejections


def good():
    return {k: v.copy() for k, v in suno_npz("v2/en_speaker_6").items()}


def changed(key, value):
    prompt = good()
    prompt[key] = value
    return prompt


BAD = {
    "missing key": ({k: v for k, v in good().items() if k != "fine_prompt"}, r"missing \['fine_prompt'\]"),
    "extra key": ({**good(), "speaker": np.zeros(3, np.int64)}, r"unexpected \['speaker'\]"),
    "extra dimension": (changed("semantic_prompt", good()["semantic_prompt"][None]), r"shape \(1, 309\).*\(S,\)"),
    "wrong codebooks": (changed("coarse_prompt", good()["fine_prompt"][:3]), r"coarse_prompt has shape \(3, 464\)"),
    "negative": (changed("semantic_prompt", good()["semantic_prompt"] - 10_000), r"0\.\.9999, found -"),
    "semantic too big": (changed("semantic_prompt", np.full(309, 10_000)), r"0\.\.9999, found 10000\.\.10000"),
    "code too big": (changed("fine_prompt", good()["fine_prompt"] + 1024), r"fine_prompt values must lie in 0\.\.1023"),
    "float": (changed("coarse_prompt", good()["coarse_prompt"].astype(np.float32)), "dtype float32; .*astype"),
    "nan": (changed("semantic_prompt", np.full(309, np.nan)), "holds NaN"),
    "bool": (changed("semantic_prompt", np.ones(309, bool)), "dtype bool"),
    "empty semantic": (changed("semantic_prompt", np.zeros(0, np.int64)), "semantic_prompt is empty"),
    "empty codes": (
        {**good(), "coarse_prompt": np.zeros((2, 0), np.int64), "fine_prompt": np.zeros((8, 0), np.int64)},
        "coarse_prompt is empty",
    ),
    "length mismatch": (changed("fine_prompt", good()["fine_prompt"][:, :-1]), "464 frames but fine_prompt 463"),
    "ratio": (changed("semantic_prompt", np.concatenate([good()["semantic_prompt"]] * 2)), "ratio 0.751"),
    "ragged": (changed("semantic_prompt", [[1, 2], [3]]), "not a rectangular array"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_voice_is_rejected(case):
    prompt, message = BAD[case]
    with pytest.raises(VoiceError, match=message):
        validate_voice(prompt, name="myvoice")
    with pytest.raises(VoiceError, match="voice dict"):
        load_voice(prompt)


def test_bad_values_in_a_file(tmp_path):
    np.savez(tmp_path / "v.npz", **BAD["negative"][0])
    with pytest.raises(VoiceError, match=r"v\.npz: semantic_prompt values"):
        load_voice(str(tmp_path / "v.npz"))


UNPICKLED = []


def _unpickled():
    UNPICKLED.append(True)
    return 0


class Trap:
    def __reduce__(self):
        return (_unpickled, ())


def test_object_arrays_are_refused_unopened(tmp_path):
    trap = np.array([Trap(), Trap()], dtype=object)
    np.savez(tmp_path / "evil.npz", **{**good(), "semantic_prompt": trap})
    np.save(tmp_path / "evil.npy", trap, allow_pickle=True)
    assert np.load(tmp_path / "evil.npy", allow_pickle=True)[0] == 0 and UNPICKLED  # the trap is live...
    UNPICKLED.clear()
    with pytest.raises(VoiceError, match="evil.npz holds pickled data.*never loaded"):
        load_voice(str(tmp_path / "evil.npz"))
    write_hub_tree(tmp_path, ["en_speaker_6"])
    shutil.copy(tmp_path / "evil.npy", tmp_path / "speaker_embeddings" / "en_speaker_6_coarse_prompt.npy")
    with pytest.raises(VoiceError, match="coarse_prompt.npy holds pickled data"):
        PresetIndex.from_dir(tmp_path).load("en_speaker_6")
    assert not UNPICKLED  # ...but nanobark never sets it off


def test_not_an_npz(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.save(tmp_path / "array.npy", np.zeros(3, np.int64))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    for f, message in [
        ("text.npz", "pickled data or is not a numpy file"),
        ("empty.npz", "not a readable"),
        ("broken.npz", "not a readable"),
        ("array.npz", "a voice is a dict.*got ndarray"),
    ]:
        with pytest.raises(VoiceError, match=f"{f}.*{message}"):
            load_voice(str(tmp_path / f))
    with pytest.raises(VoiceFileNotFoundError, match="nope.npz not found"):
        load_voice(str(tmp_path / "nope.npz"))


def test_unknown_name_lists_close_names(suno_index):
    with pytest.raises(VoiceError, match="unknown voice preset 'v2/en_speakr_6'; close names: v2/en_speaker_6"):
        load_voice("v2/en_speakr_6", presets=suno_index)
    with pytest.raises(VoiceError, match="'v2/EN_SPEAKER_6'; close names: v2/en_speaker_6,"):  # had none
        load_voice("v2/EN_SPEAKER_6", presets=suno_index)
    with pytest.raises(VoiceError, match="e.g. announcer"):
        suno_index.load("zzzzzz")


def test_misused_load_voice(suno_index):
    with pytest.raises(VoiceError, match="no presets were given.*PresetIndex"):
        load_voice("v2/en_speaker_6")
    with pytest.raises(VoiceError, match="got int"):
        load_voice(6, presets=suno_index)
    with pytest.raises(VoiceError, match="got list"):
        validate_voice([1, 2, 3])
    with pytest.raises(VoiceFileNotFoundError, match="not found"):
        PresetIndex.from_npz_dir(os.path.join(SUNO_PROMPTS, "missing"))


# ---- saving


def test_save_round_trip(tmp_path):
    raw = suno_npz("v2/en_speaker_6")
    path = save_voice(tmp_path / "mine", *parts(raw))
    assert path == str(tmp_path / "mine.npz") and os.listdir(tmp_path) == ["mine.npz"]
    assert_same_voice(load_voice(path), raw)
    suno = _load_history_prompt(path)  # Suno's own loader reads it too
    assert sorted(suno.files) == sorted(KEYS)
    for k in KEYS:
        np.testing.assert_array_equal(suno[k], raw[k])
    assert save_voice(str(tmp_path / "other.npz"), *parts(raw)) == str(tmp_path / "other.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    raw = suno_npz("announcer")
    path = save_voice(tmp_path / "v.npz", *parts(raw))
    before = open(path, "rb").read()

    def crash(f, **arrays):
        f.write(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_voice(path, *parts(suno_npz("en_speaker_6")))
    assert os.listdir(tmp_path) == ["v.npz"] and open(path, "rb").read() == before


def test_save_rejects_bad_voice_and_missing_folder(tmp_path):
    raw = suno_npz("en_speaker_6")
    with pytest.raises(VoiceError, match="fine_prompt has shape"):
        save_voice(tmp_path / "bad", raw["semantic_prompt"], raw["coarse_prompt"], raw["coarse_prompt"])
    assert os.listdir(tmp_path) == []
    with pytest.raises(VoiceFileNotFoundError, match="does not exist"):
        save_voice(tmp_path / "no" / "v.npz", *parts(raw))


def test_a_voice_file_is_found_whatever_the_case_of_its_extension(tmp_path):
    raw = suno_npz("en_speaker_6")
    path = save_voice(tmp_path / "Me.NPZ", *parts(raw))
    assert path == str(tmp_path / "Me.NPZ") and os.listdir(tmp_path) == ["Me.NPZ"]  # not "Me.NPZ.npz"
    for key, value in load_voice(path).items():  # a file path, not "an unknown preset"
        np.testing.assert_array_equal(value, raw[key])


def test_find_voice_s_one_order_preset_then_recording_then_file(tmp_path):
    """load_voice and both command checks (--voice, a manifest's voice column) look a name up this way."""
    save_voice(tmp_path / "announcer", *parts(suno_npz("announcer")))  # a file named like a preset
    names = lambda: ["announcer", "v2/en_speaker_6"]  # noqa: E731
    assert find_voice("announcer", names, str(tmp_path)) == ("preset", "announcer")  # the preset wins
    assert find_voice("v2\\en_speaker_6", names) == ("preset", "v2\\en_speaker_6")
    assert find_voice("me.WAV", names, str(tmp_path)) == ("recording", str(tmp_path / "me.WAV"))
    assert find_voice("announcer", lambda: [], str(tmp_path)) == ("file", str(tmp_path / "announcer.npz"))

    def damaged():
        raise VoiceError("speaker_embeddings_path.json is damaged")

    assert find_voice("announcer", damaged, str(tmp_path))[0] == "file"  # the index matters only for a preset
    with pytest.raises(VoiceError, match="is damaged"):
        find_voice("v2/en_speaker_6", damaged, str(tmp_path))
    with pytest.raises(VoiceError, match="unknown voice preset 'v2/en_speakr_6'; close names: v2/en_speaker_6"):
        find_voice("v2/en_speakr_6", names, str(tmp_path))
    with pytest.raises(VoiceError, match="the model has no voice presets"):
        find_voice("nobody", lambda: [], str(tmp_path))


@pytest.mark.parametrize(
    "changes, said",
    [
        (dict(fine_prompt=np.zeros((8, 464, 1), np.int64)), r"fine_prompt has shape \(8, 464, 1\), expected \(8, T\)"),
        (dict(semantic_prompt=np.array(7)), r"semantic_prompt has shape \(\), expected \(S,\)"),
        (dict(coarse_prompt=np.full((2, 464), np.inf)), "coarse_prompt has dtype float64"),
        (dict(semantic_prompt=np.full(309, 2**63, np.uint64)), r"semantic_prompt values .* found 9223372036854775808"),
        (dict(fine_prompt=np.zeros((8, 500), np.int64)), "coarse_prompt has 464 frames but fine_prompt 500"),
        (dict(coarse_prompt=None), r"missing \['coarse_prompt'\]"),
    ],
)
def test_hostile_voice_files_are_rejected_by_name(changes, said, tmp_path):
    with pytest.raises(VoiceError, match=f"v.npz: {said}"):
        load_voice(npz_voice(tmp_path / "v.npz", **changes))


def test_forged_member_headers_are_refused_before_allocating(tmp_path):
    huge = npy_header("{'descr': '<i8', 'fortran_order': False, 'shape': (8, 68719476736), }")
    with pytest.raises(VoiceError, match=r"huge.npz has an array header declaring shape \(8, 68719476736\)"):
        load_voice(forged_npz(tmp_path / "huge.npz", huge))
    code = npy_header("{'descr': __import__(")
    with pytest.raises(VoiceError, match="code.npz has an array header that cannot be parsed"):
        load_voice(forged_npz(tmp_path / "code.npz", code))
    # the same headers as a whole .npy file
    (tmp_path / "huge.npy").write_bytes(huge + bytes(64))
    with pytest.raises(VoiceError, match="huge.npy has an array header declaring"):
        load_voice(str(tmp_path / "huge.npy"))
