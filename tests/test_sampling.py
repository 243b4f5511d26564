"""The sampler on its own (torch only): the per-sample draw equals torch.multinomial, the filters keep what
they promise (the settings' checks: test_settings.py). Parity of whole runs with the original is in
test_generation.py."""

import numpy as np
import pytest
import torch

from nanobark.sampling import draw, sample, top_k_filter, top_p_filter


def random_logits(rows=3, vocab=50, scale=3.0, seed=0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_draw_with_a_generator_equals_torch_multinomial_from_the_global_one(seed):
    """Why a seeded batch gives the original's tokens: the same draws, row by row, as torch.multinomial."""
    probs = torch.softmax(random_logits(4, 1000, seed=seed), dim=-1)
    torch.manual_seed(seed)
    expected = torch.multinomial(probs, num_samples=1)[:, 0]
    got = draw(probs, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    assert torch.equal(got, expected) and torch.equal(draw(probs), expected)


def test_draw_follows_the_distribution():
    probs = torch.tensor([0.7, 0.2, 0.1, 0.0]).expand(20_000, 4)
    counts = np.bincount(draw(probs, torch.Generator().manual_seed(0)).numpy(), minlength=4) / 20_000
    assert np.abs(counts - [0.7, 0.2, 0.1, 0.0]).max() < 0.01


def test_top_k_keeps_the_k_largest_and_ties():
    logits = torch.tensor([[1.0, 5.0, 3.0, 5.0, 2.0, 3.0]])
    kept = top_k_filter(logits, 3).isfinite()[0].tolist()
    assert kept == [False, True, True, True, False, True]  # 5, 5, 3 and the other 3 (a tie with the 3rd)
    assert top_k_filter(logits, 100).isfinite().all()


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.7, 0.95, 1.0])
def test_top_p_keeps_the_smallest_prefix_whose_mass_exceeds_top_p(top_p):
    logits = random_logits()
    kept = top_p_filter(logits, top_p).isfinite().numpy()
    for row, keep in zip(logits.numpy(), kept):
        order = np.argsort(-row)
        probs = np.exp(row[order] - row.max())
        cumulative = np.cumsum(probs / probs.sum())
        n = int(np.searchsorted(cumulative, top_p, side="right")) + 1  # up to the first token past top_p
        assert set(np.flatnonzero(keep)) == set(order[:n]) and keep.sum() >= 1


def test_sample_applies_top_p_then_top_k_then_temperature():
    logits = random_logits(2, 200, scale=1.0)  # flat enough that top-p keeps more than 5 tokens
    tokens, probs = sample(
        logits, 0.5, top_k=5, top_p=0.5, generators=[torch.Generator().manual_seed(i) for i in (0, 1)]
    )
    both = top_k_filter(top_p_filter(logits, 0.5), 5)
    np.testing.assert_allclose(probs.numpy(), torch.softmax(both / 0.5, dim=-1).numpy(), rtol=1e-6)
    assert ((probs > 0).sum(-1) <= 5).all() and both.isfinite()[range(2), tokens].all()
    assert not torch.equal(top_p_filter(logits, 0.5).isfinite(), both.isfinite())  # top-k removed more here


def test_inactive_rows_are_not_drawn_and_do_not_use_their_generator():
    probs_logits = random_logits(2, 100)
    g = [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)]
    tokens, _ = sample(probs_logits, 1.0, generators=g, active=[True, False])
    assert (
        tokens[1] == 0
        and g[1].initial_seed() == 4
        and torch.equal(g[1].get_state(), torch.Generator().manual_seed(4).get_state())
    )
