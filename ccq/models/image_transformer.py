"""The image transformer (Eq. 1): self-attention over the bottleneck tokens, with a learned class token."""

from __future__ import annotations

import torch
from torch import nn

from ccq.models.transformer import TransformerBlock, init_linear_trunc_normal


class ImageTransformer(nn.Module):
    """tokens = Linear(F flattened); [cls; tokens] -> dropout -> blocks (P added to keys/values) -> LayerNorm.

    The positional embedding P is owned by the caller (CCQ reuses it in the focused querying) and passed in.
    """

    def __init__(
        self,
        in_dim: int = 256,
        dim: int = 256,
        mlp_dim: int = 512,
        heads: int = 8,
        layers: int = 4,
        dropout: float = 0.1,
        class_token: bool = True,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.class_token: nn.Parameter | None = None
        self.class_pos: nn.Parameter | None = None
        if class_token:
            self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.class_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear_trunc_normal(self)
        if self.class_token is not None:
            nn.init.trunc_normal_(self.class_token, std=0.02)
            nn.init.trunc_normal_(self.class_pos, std=0.02)

    def forward(self, feature: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """feature: [B, C, d, h, w], pos: [1, N, dim] with N = d*h*w ->
        (class token [B, 1, dim] or None, image tokens [B, N, dim])."""
        b = feature.shape[0]
        x = self.proj(feature.flatten(2).transpose(1, 2))
        if self.class_token is not None:
            x = torch.cat([self.class_token.expand(b, -1, -1), x], dim=1)
            pos = torch.cat([self.class_pos, pos], dim=1)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, pos=pos)
        x = self.norm(x)
        if self.class_token is None:
            return None, x
        return x[:, :1], x[:, 1:]
