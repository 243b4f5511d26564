"""The causal GPT (semantic and coarse stages) equals transformers' port and Suno's original."""

import pytest
import torch

from helpers import suno_copy
from nanobark.config import GPTConfig
from nanobark.fine import FineGPT
from nanobark.gpt import GPT
from nanobark.weights.checkpoint import load_stage

TOL = 1e-5


@pytest.fixture(scope="module", params=["semantic", "coarse"])
def pair(request, hf_bark, converted):
    hf = hf_bark.semantic if request.param == "semantic" else hf_bark.coarse_acoustics
    return request.param, hf, load_stage(converted, request.param)


@torch.no_grad()
def test_prefill_logits_equal_transformers_and_suno(pair):
    stage, hf, ours = pair
    ref = suno_copy(ours)
    idx = torch.randint(0, ours.config.input_vocab_size, (2, 300))
    logits = ours(idx)
    assert logits.shape == (2, 300, ours.config.output_vocab_size)
    assert (logits - hf(input_ids=idx).logits).abs().max() <= TOL
    suno_last, _ = ref(idx)
    assert (logits[:, -1:] - suno_last).abs().max() <= TOL
    assert (ours(idx, last_only=True) - suno_last).abs().max() <= TOL


@torch.no_grad()
def test_merged_context_equals_references(hf_bark, converted):
    ours = load_stage(converted, "semantic")
    ref = suno_copy(ours)
    text = torch.randint(10_048, 129_595, (1, 256))
    hist = torch.randint(0, 10_001, (1, 256))
    tail = torch.cat([torch.tensor([[129_599]]), torch.randint(0, 10_000, (1, 9))], dim=1)
    logits = ours(embeds=ours.merged_embedding(text, hist, tail))
    assert logits.shape == (1, 266, 10_048)
    emb = hf_bark.semantic.input_embeds_layer
    hf_embeds = torch.cat([emb(text) + emb(hist), emb(tail)], dim=1)
    assert (logits - hf_bark.semantic(inputs_embeds=hf_embeds).logits).abs().max() <= TOL
    suno_last, _ = ref(torch.cat([text, hist, tail], dim=1), merge_context=True)
    assert (logits[:, -1:] - suno_last).abs().max() <= TOL


@torch.no_grad()
def test_cached_steps_equal_full_forward(pair):
    """Prefill with the static cache, then 24 one-token steps: each step equals the references."""
    stage, hf, ours = pair
    ref = suno_copy(ours)
    V = ours.config.input_vocab_size
    seq = torch.randint(0, V, (1, 64 + 24))
    ours.setup_cache(batch_size=1)
    try:
        out = ours(seq[:, :64], start=0, last_only=True)
        assert (out - hf(input_ids=seq[:, :64]).logits[:, -1:]).abs().max() <= TOL
        suno_logits, kv = ref(seq[:, :64], use_cache=True)
        for t in range(64, 64 + 24):
            out = ours(seq[:, t : t + 1], start=t)
            full = hf(input_ids=seq[:, : t + 1]).logits[:, -1:]
            suno_logits, kv = ref(seq[:, t : t + 1], past_kv=kv, use_cache=True)
            assert (out - full).abs().max() <= TOL
            assert (out - suno_logits).abs().max() <= TOL
    finally:
        ours.clear_cache()


@torch.no_grad()
def test_cache_prefill_after_earlier_positions():
    """A multi-token write at a later start (the explicit mask, not is_causal) equals one long prefill."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, input_vocab_size=50, output_vocab_size=50)).eval()
    seq = torch.randint(0, 50, (2, 40))
    full = model(seq)
    model.setup_cache(2)
    a = model(seq[:, :25], start=0)
    b = model(seq[:, 25:], start=25)
    model.clear_cache()
    assert torch.allclose(torch.cat([a, b], 1), full, atol=TOL)


@torch.no_grad()
def test_bias_variant_equals_suno():
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=32, input_vocab_size=100, output_vocab_size=90, bias=True)
    model = GPT(cfg).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    ref = suno_copy(model)
    idx = torch.randint(0, 100, (3, 50))
    assert (model(idx, last_only=True) - ref(idx)[0]).abs().max() <= TOL


@torch.no_grad()
def test_fine_logits_equal_transformers_and_suno(hf_bark, converted):
    ours = load_stage(converted, "fine")
    assert isinstance(ours, FineGPT)
    ref = suno_copy(ours, fine=True)
    codes = torch.randint(0, 1025, (2, 200, 8))
    for k in range(1, 8):
        logits = ours(k, codes)
        assert logits.shape == (2, 200, 1056)
        assert (logits - hf_bark.fine_acoustics(k, codes).logits).abs().max() <= TOL
        assert (logits - ref(k, codes)).abs().max() <= TOL
    with pytest.raises(ValueError, match="pred_idx"):
        ours(0, codes)


@torch.no_grad()
@pytest.mark.parametrize("start, padded", [(0, False), (25, False), (0, True), (25, True)])
def test_last_only_equals_the_last_row_of_all_logits(start, padded):
    """last_only runs the last block for the last token only (is_causal from slot 0, the explicit mask after
    cached slots or padding): its logits, the cache it leaves and the next step equal a full forward's."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, input_vocab_size=50, output_vocab_size=50)).eval()
    seq = torch.randint(0, 50, (2, 40))
    pad = torch.tensor([3, 0]) if padded else None

    def prefill_then_step(last_only):
        model.setup_cache(2)
        if start:
            model(seq[:, :start], pad=pad)
        logits = model(seq[:, start:], start=start, pad=pad, last_only=last_only)[:, -1:]
        cache = torch.cat([b.attn.cache.kv for b in model.h])
        step = model(seq[:, :1], start=40, pad=pad)  # reads the keys and values the prefill cached
        model.clear_cache()
        return logits, cache, step

    for full, last in zip(prefill_then_step(False), prefill_then_step(True)):
        assert (full - last).abs().max() <= TOL
