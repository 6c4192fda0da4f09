"""The model configuration: one frozen dataclass, saved as JSON beside every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ccq.utils.config import Config

BaselineArch = Literal["multinets", "tal", "multihead", "condenc", "conddec"]
Arch = Literal["ccq", "dodnet", BaselineArch]
SkipMode = Literal["attentive", "paper", "additive"]
Activation = Literal["leaky_relu", "relu"]

BASELINE_ARCHS: tuple[str, ...] = get_args(BaselineArch)
"""The paper's Table 1 baselines other than DoDNet (docs/baselines.md): the bottleneck F feeds the decoder."""


@dataclass(frozen=True)
class ModelConfig(Config):
    """Every width, depth and switch of CCQ and of the DoDNet baseline.

    Defaults are the official CCQ (docs/architecture.md#the-network); presets in `ccq.models.presets` name the variants.
    """

    arch: Arch = "ccq"
    """"ccq": queries feed the decoder, two branches (organ, tumor); "dodnet": the bottleneck feeds the decoder;
    the Table 1 baselines (`BASELINE_ARCHS`, docs/baselines.md): "multinets" (one network per task), "tal" (one
    softmax over every task's classes), "multihead" (one decoder per task), "condenc" (task one-hot as input
    channels), "conddec" (task-conditioned decoder normalisation)."""
    num_tasks: int = 7
    in_channels: int = 1
    patch_size: tuple[int, int, int] = (64, 192, 192)
    """(D, H, W); each divisible by 2**(number of downsampling stages). The positional embedding depends on it."""

    # CNN encoder / decoder
    stem_channels: int = 32
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    encoder_blocks: tuple[int, ...] = (1, 2, 2, 2, 2)
    decoder_channels: tuple[int, ...] = (128, 64, 32, 32)
    """Output channels of the decoder's residual block at each level, deepest first."""
    norm_groups: int = 16
    activation: Activation = "leaky_relu"
    negative_slope: float = 0.1
    weight_std: bool = True
    skip: SkipMode = "attentive"
    """"attentive": U + S*gate (official code); "paper": U + S*gate + S with 1x1x1 convs (Eq. 5 as written);
    "additive": U + S (DoDNet, and the "w/o Attn-Skip" ablation)."""

    # Transformers
    dim: int = 256
    mlp_dim: int = 512
    heads: int = 8
    dropout: float = 0.1
    image_layers: int = 4
    query_layers: int = 2
    querying_layers: int = 4
    num_queries: int = 32

    # Table 2 ablation switches ("w/o Q-Generation" is query_layers=0)
    image_transformer: bool = True
    querying: bool = True
    query_concat: bool = True
    """Keys/values of the focused querying are [Q_enc; image tokens] (True) or image tokens only ("w/o Q-F_enc-Cat")."""

    # Dynamic head
    head_channels: int = 8

    config_name = "model config"

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        """What the field types cannot say (types, choices and tuple lengths are checked before)."""
        for name in ("patch_size", "encoder_channels", "encoder_blocks", "decoder_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.num_tasks < 1:
            self._fail("num_tasks", "a positive integer")
        levels = len(self.encoder_channels)
        if levels < 2 or len(self.encoder_blocks) != levels:
            self._fail("encoder_blocks", f"{levels} entries, one per encoder stage")
        if len(self.decoder_channels) != levels - 1:
            self._fail("decoder_channels", f"{levels - 1} entries (one per skip level)")
        factor = self.downsampling
        if any(p <= 0 or p % factor for p in self.patch_size):
            self._fail("patch_size", f"positive sizes divisible by {factor}")
        skips = self.encoder_channels[:-1]
        expected = (*reversed(skips[:-1]), self.decoder_channels[-1])
        if self.decoder_channels != expected:
            self._fail(
                "decoder_channels",
                f"{list(expected)}: each level's block must output the channels of the next (shallower) skip "
                f"{list(skips)}",
            )
        if self.arch != "ccq" and self.encoder_channels[-1] != skips[-1]:
            self._fail(
                "encoder_channels",
                f"the same last two entries for arch {self.arch!r} (its decoder adds the bottleneck to the deepest "
                "skip)",
            )
        channels = (self.stem_channels, *self.encoder_channels, *self.decoder_channels)
        if any(c % self.norm_groups for c in channels):
            self._fail("norm_groups", f"a divisor of every channel count {list(channels)}")
        if self.dim % self.heads:
            self._fail("heads", f"a divisor of dim={self.dim}")
        if not 0.0 <= self.dropout < 1.0:
            self._fail("dropout", "a probability in [0, 1)")
        if self.arch in BASELINE_ARCHS and self.image_transformer:
            self._fail("image_transformer", f"false for arch {self.arch!r} (the baselines have none)")
        if self.arch == "ccq" and not self.image_transformer:
            self._fail("image_transformer", "true for arch 'ccq' (its queries read the image tokens)")
        if self.arch == "dodnet" and self.image_transformer and self.dim != self.encoder_channels[-1]:
            self._fail(
                "dim",
                f"{self.encoder_channels[-1]} (the bottleneck channels) when the DoDNet decoder starts from the "
                "image transformer's tokens",
            )
        for name in ("num_queries", "head_channels"):
            if getattr(self, name) < 1:
                self._fail(name, "a positive integer")

    # ------------------------------------------------------------------ derived values
    @property
    def downsampling(self) -> int:
        """Total stride of the encoder (16 for the official five stages)."""
        return 2 ** (len(self.encoder_channels) - 1)

    @property
    def bottleneck_size(self) -> tuple[int, int, int]:
        f = self.downsampling
        return (self.patch_size[0] // f, self.patch_size[1] // f, self.patch_size[2] // f)

    @property
    def num_tokens(self) -> int:
        d, h, w = self.bottleneck_size
        return d * h * w
