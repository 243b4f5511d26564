"""Model shapes as dataclasses, with named presets for the released checkpoints.

Bark is three GPTs and a codec. The two causal GPTs (semantic and coarse) and the
non-causal fine GPT share one config class; the codec has its own.
"""

from dataclasses import asdict, dataclass, field


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024  # learned positions, and the KV cache length
    input_vocab_size: int = 10_048
    output_vocab_size: int = 10_048
    bias: bool = False  # the released checkpoints have no Linear/LayerNorm biases
    n_codes_total: int = 8  # fine model only: codebooks in the input
    n_codes_given: int = 1  # fine model only: codebooks never predicted (one head per other)


@dataclass
class CodecConfig:
    """EnCodec 24 kHz decoder (causal SEANet, 75 frames/s, 320 samples per frame)."""

    dimension: int = 128  # latent channels = codebook vector size
    n_filters: int = 32
    ratios: tuple = (8, 5, 4, 2)  # upsampling strides; their product is the hop length 320
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2  # residual blocks squeeze channels by this factor
    lstm_layers: int = 2
    codebook_size: int = 1024
    n_codebooks: int = 8  # Bark only ever decodes 8 codebooks (6 kbps)
    sample_rate: int = 24_000


@dataclass
class BarkConfig:
    semantic: GPTConfig = field(
        default_factory=lambda: GPTConfig(input_vocab_size=129_600, output_vocab_size=10_048)
    )
    coarse: GPTConfig = field(
        default_factory=lambda: GPTConfig(input_vocab_size=12_096, output_vocab_size=12_096)
    )
    fine: GPTConfig = field(
        default_factory=lambda: GPTConfig(input_vocab_size=1_056, output_vocab_size=1_056)
    )
    codec: CodecConfig = field(default_factory=CodecConfig)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        codec = dict(d["codec"])
        codec["ratios"] = tuple(codec["ratios"])
        return cls(
            GPTConfig(**d["semantic"]), GPTConfig(**d["coarse"]), GPTConfig(**d["fine"]), CodecConfig(**codec)
        )


def _preset(n_layer, n_head, n_embd):
    c = BarkConfig()
    for gpt in (c.semantic, c.coarse, c.fine):
        gpt.n_layer, gpt.n_head, gpt.n_embd = n_layer, n_head, n_embd
    return c


PRESETS = {"bark-small": lambda: _preset(12, 12, 768), "bark": lambda: _preset(24, 16, 1024)}
