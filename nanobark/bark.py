"""`Bark`: the four networks, the tokenizer and the voice presets, behind one small API.

    bark = Bark.from_pretrained("suno/bark-small")
    audio = bark.generate("Hello, my dog is cute", voice="v2/en_speaker_6")  # float32, 24 kHz

Each stage is also callable on its own (text_to_semantic, semantic_to_coarse, coarse_to_fine,
decode), with Suno's defaults. Device and dtype are chosen once, here.
"""

import contextlib
import os
from dataclasses import replace

import numpy as np
import torch

from .cloning import clone_voice
from .cpu_speed import lay_out_weights, quantize_int8_
from .device import check_device, check_dtype, check_int8
from .generation import generate_coarse, generate_fine, generate_semantic, semantic_history
from .layout import CODEBOOK_SIZE, SAMPLE_RATE, SEMANTIC_VOCAB_SIZE, check_ids
from .progress import progress_bar
from .settings import Settings, check_seed, item_seed
from .tokenizer import Tokenizer, text_prompt
from .voices import PresetIndex, VoiceError, find_voice_file, load_voice, save_voice
from .weights.checkpoint import load_config, load_stage
from .weights.hub import resolve

STAGES = ("semantic", "coarse", "fine", "codec")


def _progress_bar(progress, transient, desc, unit):
    """progress: a bar per stage on stderr; transient: bars that vanish when done (long form draws its own
    around them). -> a progress(done, total) callback, or None."""
    return progress_bar(desc, unit, transient=transient) if progress else None


class Bark:
    sample_rate = SAMPLE_RATE

    def __init__(self, models, tokenizer, presets=None, device="cpu", dtype=torch.float32, offload=False, path=None):
        self.models = models  # {"semantic", "coarse", "fine", "codec"}: nn.Modules
        self.path = path  # the converted folder, where voice cloning finds the EnCodec encoder
        self.tokenizer = tokenizer
        self.presets = presets  # a PresetIndex, or None
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload  # keep stages on the CPU, move each to the device only while it runs

    @classmethod
    def from_pretrained(
        cls, name_or_path="suno/bark-small", device=None, dtype=None, offload=False, compile=False, int8=False
    ):
        """A Hub id ("suno/bark-small", "suno/bark"), a Hub-layout snapshot folder, or a folder nanobark.convert wrote.

        dtype: float32 (default), float16 or bfloat16 for the three GPTs (the codec stays float32).
        offload: keep every stage on the CPU and move only the running one to the device.
        compile: capture the one-token decode step with torch.compile (CUDA graphs on a GPU).
        int8: int8 Linear weights for the decode steps, bfloat16 ones for wide passes where the CPU has them natively,
            for faster CPU decoding (see cpu_speed.py).
        """
        device, dtype = check_device(device), check_dtype(dtype)
        check_int8(int8, device, dtype, compile)
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"name_or_path must be a Hub id or a folder, got {type(name_or_path).__name__}")
        path, fetch = resolve(os.fspath(name_or_path))
        config = load_config(path)
        home = "cpu" if offload else device
        models = {}
        for s in STAGES:
            models[s] = load_stage(path, s, config, home, dtype if s != "codec" else torch.float32)
            if int8 and s != "codec":  # stage by stage, so only one stage's float32 weights are held at a time
                quantize_int8_(models[s])
        has_presets = os.path.exists(os.path.join(path, "speaker_embeddings_path.json"))
        presets = PresetIndex.from_dir(path, fetch) if has_presets else None
        if compile:
            for s in ("semantic", "coarse"):
                models[s].compile_step()
        return cls(models, Tokenizer.from_dir(path), presets, device, dtype, offload, path)

    # -------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _stage(self, name, batch_size=1):
        """The stage's model, on the device for the duration (moved back to the CPU after, with offload).

        The causal GPTs' weights are laid out for the batch size about to decode (cpu_speed.py)."""
        model = self.models[name]
        if self.offload:
            model.to(self.device)
        if name in ("semantic", "coarse"):
            lay_out_weights(model, batch_size)
        try:
            yield model
        finally:
            if self.offload:
                if hasattr(model, "clear_cache"):  # the KV cache leaves the device with its stage
                    model.clear_cache()
                model.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def load_voice(self, voice):
        """A preset name, a .npz path or a dict -> validated dict of int64 arrays (None stays None)."""
        if isinstance(voice, str) and find_voice_file(voice) is None and self.presets is None:
            raise VoiceError(
                f"voice {voice!r} looks like a preset name, but this model has no "
                "speaker_embeddings_path.json; pass a .npz path or a dict instead"
            )
        return load_voice(voice, self.presets)

    def encode_text(self, text):
        """Normalized, tokenized, offset and padded text block: (256,) int64 (a warning if truncated)."""
        return text_prompt(self.tokenizer.text_ids(text))

    def _batch(self, items, voice, what):
        """One item or a list -> (list of items, list of loaded voices, was it a single item?).

        `voice` is one voice for every item, or a list with one voice per item.
        """
        single = not isinstance(items, (list, tuple))
        items = [items] if single else list(items)
        if not items:
            raise ValueError(f"got an empty list of {what}")
        if isinstance(voice, (list, tuple)):
            if len(voice) != len(items):
                raise ValueError(
                    f"got {len(voice)} voices for {len(items)} {what}: pass one voice for all, "
                    "or a list with one voice per item"
                )
            return items, [self.load_voice(v) for v in voice], single
        return items, [self.load_voice(voice)] * len(items), single

    def _generators(self, seed, n):
        """None (torch's global RNG, as the original), an int (sample i gets seed + i), or n torch.Generators."""
        if seed is None:
            return None
        if isinstance(seed, (list, tuple)):
            if len(seed) != n or not all(isinstance(g, torch.Generator) for g in seed):
                raise ValueError(f"seed must be an int, None, or a list of {n} torch.Generator")
            return list(seed)
        seed = check_seed(seed, n=n)
        return self.generators([item_seed(seed, i) for i in range(n)])

    def generators(self, seeds):
        """One torch.Generator on the model's device per int seed, for `seed=` of the stages and generate."""
        return [torch.Generator(device=self.device).manual_seed(s) for s in seeds]

    # -------------------------------------------------------------- the stages
    # Each takes one item or a list (a batch); `voice` is one voice or one per item; `seed` is None,
    # an int (sample i of a batch gets seed + i, so a batch gives what each item gives alone) or
    # one torch.Generator per item. The defaults and the checks are Settings'.

    def text_to_semantic(
        self,
        text,
        voice=None,
        temp=Settings.text_temp,
        top_k=None,
        top_p=None,
        min_eos_p=Settings.min_eos_p,
        allow_early_stop=True,
        max_duration=None,
        seed=None,
        progress=False,
        transient=False,
    ):
        """Text -> 1-D int64 array of semantic tokens (about 50 per second of audio)."""
        Settings(text_temp=temp, top_k=top_k, top_p=top_p, min_eos_p=min_eos_p, max_duration=max_duration)
        texts, voices, single = self._batch(text, voice, "texts")
        text_ids = np.stack([self.encode_text(t) for t in texts])
        history = np.stack([semantic_history(v) for v in voices])
        generators = self._generators(seed, len(texts))
        with self._stage("semantic", len(texts)) as model:
            bar = _progress_bar(progress, transient, "semantic", "tokens")
            out = generate_semantic(
                model, text_ids, history, temp, top_k, top_p, min_eos_p, allow_early_stop, max_duration, generators, bar
            )
        return out[0] if single else out

    def semantic_to_coarse(
        self,
        semantic,
        voice=None,
        temp=Settings.waveform_temp,
        top_k=None,
        top_p=None,
        seed=None,
        progress=False,
        transient=False,
    ):
        """Semantic tokens -> (2, T) int64 codes of EnCodec codebooks 0 and 1 (75 frames per second)."""
        Settings(waveform_temp=temp, top_k=top_k, top_p=top_p)
        semantics, voices, single = self._batch(semantic, voice, "semantic arrays")
        semantics = [check_ids(s, "semantic tokens", SEMANTIC_VOCAB_SIZE) for s in semantics]
        generators = self._generators(seed, len(semantics))
        with self._stage("coarse", len(semantics)) as model:
            bar = _progress_bar(progress, transient, "coarse", "tokens")
            out = generate_coarse(model, semantics, voices, temp, top_k, top_p, generators, bar)
        return out[0] if single else out

    def coarse_to_fine(self, coarse, voice=None, temp=Settings.fine_temp, seed=None, progress=False, transient=False):
        """(2, T) codes -> (8, T) int64 codes; temp=None means argmax."""
        Settings(fine_temp=temp)
        coarses, voices, single = self._batch(coarse, voice, "coarse arrays")
        coarses = [check_ids(c, "coarse codes", CODEBOOK_SIZE, rows=(1, 8)) for c in coarses]
        if len({c.shape[0] for c in coarses}) > 1:
            raise ValueError("all coarse arrays of a batch must have the same number of codebooks")
        generators = self._generators(seed, len(coarses))
        with self._stage("fine", len(coarses)) as model:
            bar = _progress_bar(progress, transient, "fine", "windows")
            out = generate_fine(model, coarses, voices, temp, generators, bar)
        return out[0] if single else out

    @torch.no_grad()
    def decode(self, fine):
        """(8, T) codes -> float32 audio of SAMPLES_PER_FRAME (320) * T samples at 24 kHz (a list for a list)."""
        fines, _, single = self._batch(fine, None, "code arrays")
        fines = [check_ids(f, "codes", CODEBOOK_SIZE, rows=(1, 8)) for f in fines]
        with self._stage("codec") as codec:
            # one at a time: the LSTM would carry padding of a batch into the shorter samples
            out = [codec.decode(torch.as_tensor(f, device=self.device)[None])[0].float().cpu().numpy() for f in fines]
        return out[0] if single else out

    def generate(
        self,
        text,
        voice=None,
        seed=None,
        settings=None,
        output_full=False,
        progress=False,
        transient=False,
        **overrides,
    ):
        """Text (or a list of texts) -> float32 audio at 24 kHz (or a list), through all four networks.

        settings: a Settings (default: Settings(), Suno's), and any of its fields as keywords over it
        (text_temp, waveform_temp, fine_temp, top_k, top_p, min_eos_p, max_duration), all checked first.
        With a seed, sampling is reproducible and torch's global RNG is left alone; without one,
        draws come from torch's global generator, exactly as in the original. With output_full=True,
        returns (dict of the three token arrays, audio) per text: the dict is a reusable voice.
        progress: a bar per stage on stderr; transient: bars that vanish when done.
        """
        s = replace(settings or Settings(), **overrides)
        texts, voices, single = self._batch(text, voice, "texts")
        generators = self._generators(seed, len(texts))  # one stream per sample, through all three stages
        per_stage = dict(seed=generators, progress=progress, transient=transient)
        semantic = self.text_to_semantic(
            texts, voices, s.text_temp, s.top_k, s.top_p, s.min_eos_p, max_duration=s.max_duration, **per_stage
        )
        if any(len(tokens) == 0 for tokens in semantic):
            raise RuntimeError(
                "the semantic model stopped before producing any token; try another seed, "
                "a lower min_eos_p, or a longer text"
            )
        coarse = self.semantic_to_coarse(semantic, voices, s.waveform_temp, s.top_k, s.top_p, **per_stage)
        fine = self.coarse_to_fine(coarse, voices, s.fine_temp, **per_stage)
        audio = self.decode(fine)
        if output_full:
            out = [
                ({"semantic_prompt": t, "coarse_prompt": c, "fine_prompt": f}, a)
                for t, c, f, a in zip(semantic, coarse, fine, audio)
            ]
        else:
            out = audio
        return out[0] if single else out

    def clone_voice(self, audio, sample_rate=None, quantizer=None, hubert=None, progress=False):
        """A recording of someone speaking -> a voice dict, usable anywhere a preset is (and by save_voice).

        See clone_voice (the function): this one uses this model's codec and device."""
        if self.path is None:
            raise ValueError("this Bark was built without a model folder; load it with Bark.from_pretrained")
        return clone_voice(self.path, audio, sample_rate, quantizer, hubert, self.device, progress)

    def save_voice(self, path, full):
        """Save the dict returned by generate(..., output_full=True) as a reusable .npz voice prompt."""
        return save_voice(path, full["semantic_prompt"], full["coarse_prompt"], full["fine_prompt"])
