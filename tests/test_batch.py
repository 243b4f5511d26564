"""Batched generation: a batch gives exactly what each item gives alone, with one voice per item."""

import numpy as np
import pytest
import torch

TEXTS = ["Hello, my dog is cute", "The world", "She said hello and laughed [laughter]"]
VOICES = ["v2/en_speaker_6", None, "announcer"]  # coarse histories of 626, 0 and 626 tokens; fine of 464, 0, 512


@pytest.mark.slow
def test_seeded_batch_equals_items_alone(bark):
    """Per-sample generators: sampling (not only greedy) is independent of the batch."""
    batch = bark.generate(TEXTS, voice=VOICES, seed=10, max_duration=0.4, output_full=True)
    assert len(batch) == 3
    for i, (text, voice) in enumerate(zip(TEXTS, VOICES)):
        full, audio = bark.generate(text, voice=voice, seed=10 + i, max_duration=0.4, output_full=True)
        for k in full:
            np.testing.assert_array_equal(batch[i][0][k], full[k])
        np.testing.assert_allclose(batch[i][1], audio, atol=1e-5)


def test_global_rng_batch_draws_every_row_and_repeats_under_the_same_seed(bark):
    """seed=None: the batch draws from torch's global generator (rows differ), reproducibly per manual_seed."""

    def run(seed):
        torch.manual_seed(seed)
        sems = bark.text_to_semantic([TEXTS[0]] * 2, "announcer", max_duration=0.3)
        coarse = bark.semantic_to_coarse(sems, "announcer")
        return sems, coarse, bark.coarse_to_fine(coarse, "announcer")

    first, again, other = run(0), run(0), run(1)
    for a, b, c in zip(first, again, other):
        assert not np.array_equal(a[0], a[1])  # same input, different draws
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])


def test_greedy_batch_equals_items_alone(bark):
    sems = bark.text_to_semantic(TEXTS, VOICES, top_k=1, max_duration=0.3)
    coarse = bark.semantic_to_coarse(sems, VOICES, top_k=1)
    fine = bark.coarse_to_fine(coarse, VOICES, temp=None)
    for i, voice in enumerate(VOICES):
        sem = bark.text_to_semantic(TEXTS[i], voice, top_k=1, max_duration=0.3)
        np.testing.assert_array_equal(sems[i], sem)
        np.testing.assert_array_equal(coarse[i], bark.semantic_to_coarse(sem, voice, top_k=1))
        np.testing.assert_array_equal(fine[i], bark.coarse_to_fine(coarse[i], voice, temp=None))


@pytest.mark.slow
def test_samples_of_different_lengths_and_long_fine_windows(bark):
    """Semantic arrays of different lengths: each coarse/fine output has its own length; >1024 frames works."""
    rng = np.random.default_rng(0)
    sems = [rng.integers(0, 10_000, n) for n in (30, 700)]
    coarse = bark.semantic_to_coarse(sems, ["v2/zh_speaker_9", None], top_k=1)
    assert [c.shape for c in coarse] == [(2, 45), (2, 1052)]
    fine = bark.coarse_to_fine(coarse + [np.tile(coarse[1], 2)], ["v2/zh_speaker_9", None, "announcer"], temp=None)
    assert [f.shape for f in fine] == [(8, 45), (8, 1052), (8, 2104)]
    alone = bark.coarse_to_fine(np.tile(coarse[1], 2), "announcer", temp=None)
    np.testing.assert_array_equal(fine[2], alone)


@pytest.mark.slow
def test_each_sample_stops_at_its_own_eos(bark):
    """With an EOS-prone head, samples stop at different steps; each output is trimmed to its own length."""
    head = bark.models["semantic"].lm_head.weight
    old = head[10_000].clone()
    with torch.no_grad():
        head[10_000] = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(3)) * 0.45
    try:
        sems = bark.text_to_semantic(TEXTS, VOICES, seed=5)
        alone = [bark.text_to_semantic(t, v, seed=5 + i) for i, (t, v) in enumerate(zip(TEXTS, VOICES))]
    finally:
        with torch.no_grad():
            head[10_000] = old
    assert len({len(s) for s in sems}) > 1 and all(0 < len(s) < 768 for s in sems)
    for a, b in zip(sems, alone):
        np.testing.assert_array_equal(a, b)


def test_batch_argument_errors(bark):
    with pytest.raises(ValueError, match="2 voices for 3 texts"):
        bark.generate(TEXTS, voice=VOICES[:2])
    with pytest.raises(ValueError, match="empty list"):
        bark.generate([])


def test_a_batch_s_seeds_run_up_to_the_largest_and_no_further(bark):
    """Sample i of a batch gets seed + i: the last one may be 2**63 - 1 (and gives what that seed gives alone),
    one more is refused before anything is generated."""
    from nanobark.settings import MAX_SEED

    texts = TEXTS[:2]
    batch = bark.generate(texts, seed=MAX_SEED - 1, max_duration=0.2, output_full=True)
    alone = bark.generate(texts[1], seed=MAX_SEED, max_duration=0.2, output_full=True)
    for k in alone[0]:
        np.testing.assert_array_equal(batch[1][0][k], alone[0][k])
    with pytest.raises(ValueError, match=r"item i of 2 uses seed \+ i"):
        bark.generate(texts, seed=MAX_SEED, max_duration=0.2)
