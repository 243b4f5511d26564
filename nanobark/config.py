"""Model shapes as dataclasses, with named presets for the released checkpoints.

Bark is three GPTs and a codec. The two causal GPTs (semantic and coarse) and the
non-causal fine GPT share one config class; the codec has its own. Voice cloning adds HuBERT and the
semantic quantizer (audio -> semantic ids), which are not part of BarkConfig: they have files of their own.
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
    """EnCodec 24 kHz, decoder and encoder (causal SEANet, 75 frames/s, 320 samples per frame)."""

    dimension: int = 128  # latent channels = codebook vector size
    n_filters: int = 32
    ratios: tuple = (8, 5, 4, 2)  # upsampling strides (the encoder's, reversed); their product is the hop 320
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2  # residual blocks squeeze channels by this factor
    lstm_layers: int = 2
    codebook_size: int = 1024
    n_codebooks: int = 8  # Bark only ever uses 8 codebooks (6 kbps), decoding and encoding
    sample_rate: int = 24_000


@dataclass
class HubertConfig:
    """HuBERT base (facebook/hubert-base-ls960), as far as the semantic quantizer reads it."""

    conv_dim: int = 512  # channels of every feature-extractor conv
    conv_kernels: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple = (5, 2, 2, 2, 2, 2, 2)  # product 320: a frame per 20 ms at 16 kHz
    n_embd: int = 768
    n_head: int = 12
    n_inner: int = 3072  # the MLP's hidden width
    n_layer: int = 9  # base has 12; the quantizer reads the 9th one's output, so the last 3 are never built
    pos_kernel: int = 128  # the positional conv's kernel width (frames) and groups
    pos_groups: int = 16
    sample_rate: int = 16_000


@dataclass
class QuantizerConfig:
    """The community's semantic quantizer: HuBERT features -> Bark's semantic ids. Its files carry no config:
    the sizes are read from the tensors' shapes (nanobark.quantizer.quantizer_config)."""

    n_input: int = 768  # HuBERT base's width
    n_hidden: int = 1024  # LSTM width
    n_layer: int = 2  # LSTM layers
    n_intermediate: int = 0  # version 1's extra Linear before the head (4096); 0 in version 0, which has none
    vocab_size: int = 10_000  # Bark's semantic ids

    @property
    def version(self):
        return 1 if self.n_intermediate else 0


@dataclass
class BarkConfig:
    semantic: GPTConfig = field(default_factory=lambda: GPTConfig(input_vocab_size=129_600, output_vocab_size=10_048))
    coarse: GPTConfig = field(default_factory=lambda: GPTConfig(input_vocab_size=12_096, output_vocab_size=12_096))
    fine: GPTConfig = field(default_factory=lambda: GPTConfig(input_vocab_size=1_056, output_vocab_size=1_056))
    codec: CodecConfig = field(default_factory=CodecConfig)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        codec = dict(d["codec"])
        codec["ratios"] = tuple(codec["ratios"])
        return cls(GPTConfig(**d["semantic"]), GPTConfig(**d["coarse"]), GPTConfig(**d["fine"]), CodecConfig(**codec))


def _preset(n_layer, n_head, n_embd):
    c = BarkConfig()
    for gpt in (c.semantic, c.coarse, c.fine):
        gpt.n_layer, gpt.n_head, gpt.n_embd = n_layer, n_head, n_embd
    return c


PRESETS = {"bark-small": lambda: _preset(12, 12, 768), "bark": lambda: _preset(24, 16, 1024)}
