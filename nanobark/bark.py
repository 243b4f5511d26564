"""`Bark`: the four networks, the tokenizer and the voice presets, behind one small API.

    bark = Bark.from_pretrained("suno/bark-small")
    audio = bark.generate("Hello, my dog is cute", voice="v2/en_speaker_6")  # float32, 24 kHz

Each stage is also callable on its own (text_to_semantic, semantic_to_coarse, coarse_to_fine,
decode), with Suno's defaults. Device and dtype are chosen once, here.
"""
import contextlib
import os

import numpy as np
import torch

from . import generation as gen
from .checkpoint import load_config, load_stage
from .hub import resolve
from .tokenizer import Tokenizer, normalize_text, text_prompt
from .voices import PresetIndex, VoiceError, load_voice, save_voice

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _check_sampling(temp=None, top_k=None, top_p=None, min_eos_p=None, allow_none_temp=False):
    if temp is None and not allow_none_temp:
        raise ValueError("temperature must be a number > 0")
    if temp is not None and not temp > 0:
        raise ValueError(f"temperature must be > 0, got {temp}" + (" (use None for argmax)" if allow_none_temp else
                                                                  " (use top_k=1 for greedy decoding)"))
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if min_eos_p is not None and not 0 <= min_eos_p <= 1:
        raise ValueError(f"min_eos_p must be in [0, 1] or None, got {min_eos_p}")


def _progress(enabled, total, desc):
    if not enabled:
        return None
    from huggingface_hub.utils import tqdm  # tqdm comes with huggingface_hub
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


class Bark:
    sample_rate = 24_000

    def __init__(self, models, tokenizer, presets=None, device="cpu", dtype=torch.float32, offload=False):
        self.models = models          # {"semantic", "coarse", "fine", "codec"}: nn.Modules
        self.tokenizer = tokenizer
        self.presets = presets        # a PresetIndex, or None
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload        # keep stages on the CPU, move each to the device only while it runs

    @classmethod
    def from_pretrained(cls, name_or_path="suno/bark-small", device=None, dtype=None, offload=False):
        """A Hub id ("suno/bark-small", "suno/bark"), a Hub-layout snapshot folder, or a weights_convert folder."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use device='cpu'")
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
            dtype = DTYPES[dtype]
        dtype = dtype or torch.float32
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"name_or_path must be a Hub id or a folder, got {type(name_or_path).__name__}")
        path, fetch = resolve(os.fspath(name_or_path))
        config = load_config(path)
        home = "cpu" if offload else device
        models = {s: load_stage(path, s, config, home, dtype if s != "codec" else torch.float32)
                  for s in ("semantic", "coarse", "fine", "codec")}
        has_presets = os.path.exists(os.path.join(path, "speaker_embeddings_path.json"))
        presets = PresetIndex.from_dir(path, fetch) if has_presets else None
        return cls(models, Tokenizer.from_dir(path), presets, device, dtype, offload)

    # -------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _stage(self, name):
        """The stage's model, on the device for the duration (moved back to the CPU after, with offload)."""
        model = self.models[name]
        if self.offload:
            model.to(self.device)
        try:
            yield model
        finally:
            if self.offload:
                model.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def load_voice(self, voice):
        """A preset name, a .npz path or a dict -> validated dict of int64 arrays (None stays None)."""
        if isinstance(voice, str) and not voice.endswith(".npz") and self.presets is None:
            raise VoiceError(f"voice {voice!r} looks like a preset name, but this model has no "
                             "speaker_embeddings_path.json; pass a .npz path or a dict instead")
        return load_voice(voice, self.presets)

    def encode_text(self, text):
        """Normalized, tokenized, offset and padded text block: (256,) int64 (a warning if truncated)."""
        return text_prompt(self.tokenizer.encode(normalize_text(text)))

    # -------------------------------------------------------------- the stages

    def text_to_semantic(self, text, voice=None, temp=0.7, top_k=None, top_p=None, min_eos_p=0.2,
                         allow_early_stop=True, max_duration_s=None, progress=False):
        """Text -> 1-D int64 array of semantic tokens (about 50 per second of audio)."""
        _check_sampling(temp, top_k, top_p, min_eos_p)
        text_ids = self.encode_text(text)[None]
        voice = self.load_voice(voice)
        bar = _progress(progress, gen.MAX_SEMANTIC_TOKENS, "semantic")
        with self._stage("semantic") as model:
            out = gen.generate_semantic(model, text_ids, gen.semantic_history(voice)[None], temp, top_k, top_p,
                                        min_eos_p, allow_early_stop, max_duration_s, bar)
        if bar is not None:
            bar.close()
        return out[0]

    def semantic_to_coarse(self, semantic, voice=None, temp=0.7, top_k=None, top_p=None, progress=False):
        """Semantic tokens -> (2, T) int64 codes of EnCodec codebooks 0 and 1 (75 frames per second)."""
        _check_sampling(temp, top_k, top_p)
        semantic = np.asarray(semantic)
        if semantic.ndim != 1 or semantic.size == 0 or semantic.dtype.kind not in "iu":
            raise ValueError(f"semantic tokens must be a non-empty 1-D integer array, got shape {semantic.shape} "
                             f"{semantic.dtype}")
        if semantic.min() < 0 or semantic.max() >= gen.SEMANTIC_VOCAB_SIZE:
            raise ValueError(f"semantic tokens must lie in 0..{gen.SEMANTIC_VOCAB_SIZE - 1}")
        voice = self.load_voice(voice)
        bar = _progress(progress, gen.coarse_steps(len(semantic)), "coarse")
        with self._stage("coarse") as model:
            out = gen.generate_coarse(model, semantic, voice, temp, top_k, top_p, bar)
        if bar is not None:
            bar.close()
        return out

    def coarse_to_fine(self, coarse, voice=None, temp=0.5, progress=False):
        """(2, T) codes -> (8, T) int64 codes; temp=None means argmax."""
        _check_sampling(temp, allow_none_temp=True)
        coarse = np.asarray(coarse)
        if coarse.ndim != 2 or not 1 <= coarse.shape[0] <= 7 or coarse.shape[1] == 0 or coarse.dtype.kind not in "iu":
            raise ValueError(f"coarse codes must be a (n, T) integer array with 1 <= n <= 7 and T > 0, "
                             f"got shape {coarse.shape} {coarse.dtype}")
        if coarse.min() < 0 or coarse.max() >= gen.CODEBOOK_SIZE:
            raise ValueError(f"coarse codes must lie in 0..{gen.CODEBOOK_SIZE - 1}")
        voice = self.load_voice(voice)
        bar = _progress(progress, len(gen.fine_windows(coarse.shape[1], 0)), "fine")
        with self._stage("fine") as model:
            out = gen.generate_fine(model, coarse, voice, temp, bar)
        if bar is not None:
            bar.close()
        return out

    @torch.no_grad()
    def decode(self, fine):
        """(8, T) codes -> float32 audio of 320 * T samples at 24 kHz."""
        fine = np.asarray(fine)
        if fine.ndim != 2 or fine.shape[0] > 8 or fine.shape[1] == 0 or fine.dtype.kind not in "iu":
            raise ValueError(f"codes must be a (n <= 8, T > 0) integer array, got shape {fine.shape} {fine.dtype}")
        with self._stage("codec") as codec:
            codes = torch.as_tensor(fine.astype(np.int64), device=self.device)[None]
            return codec.decode(codes)[0].float().cpu().numpy()

    def generate(self, text, voice=None, seed=None, text_temp=0.7, waveform_temp=0.7, fine_temp=0.5,
                 top_k=None, top_p=None, min_eos_p=0.2, max_duration_s=None, output_full=False, progress=False):
        """Text -> float32 audio at 24 kHz, through all four networks with one voice.

        With a seed, sampling is reproducible and torch's global RNG state is left as it was;
        without one, draws come from torch's global generator, exactly as in the original.
        With output_full=True, returns (dict of the three token arrays, audio): the dict is a voice.
        """
        _check_sampling(text_temp, top_k, top_p, min_eos_p)
        _check_sampling(waveform_temp)
        _check_sampling(fine_temp, allow_none_temp=True)
        voice = self.load_voice(voice)
        rng = torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])
        with rng if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            semantic = self.text_to_semantic(text, voice, text_temp, top_k, top_p, min_eos_p,
                                             max_duration_s=max_duration_s, progress=progress)
            if len(semantic) == 0:
                raise RuntimeError("the semantic model stopped before producing any token; try another seed, "
                                   "a lower min_eos_p, or a longer text")
            coarse = self.semantic_to_coarse(semantic, voice, waveform_temp, top_k, top_p, progress=progress)
            fine = self.coarse_to_fine(coarse, voice, fine_temp, progress=progress)
        audio = self.decode(fine)
        if output_full:
            return {"semantic_prompt": semantic, "coarse_prompt": coarse, "fine_prompt": fine}, audio
        return audio

    def save_voice(self, path, full):
        """Save the dict returned by generate(..., output_full=True) as a reusable .npz voice prompt."""
        return save_voice(path, full["semantic_prompt"], full["coarse_prompt"], full["fine_prompt"])
