"""Query weighting (Eq. 4) and the projection of the weighted queries to the decoder's bottleneck map."""

from __future__ import annotations

import torch
from torch import nn


def _ln_linear_act(in_dim: int, out_dim: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), act)


class QueryWeighting(nn.Module):
    """Q_w = sigmoid(Lin(LN([c; TEB]))) * Q_dec, with c = LReLU(Lin(LN([a; b]))), a from Q_enc, b from Q_dec.

    One confidence scalar per query.
    """

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.enc_proj = _ln_linear_act(dim, dim, nn.LeakyReLU(0.1, inplace=True))
        self.dec_proj = _ln_linear_act(dim, dim, nn.LeakyReLU(0.1, inplace=True))
        self.fuse = _ln_linear_act(2 * dim, dim, nn.LeakyReLU(0.1, inplace=True))
        self.confidence = _ln_linear_act(2 * dim, 1, nn.Sigmoid())

    def forward(self, q_enc: torch.Tensor, q_dec: torch.Tensor, task_embed: torch.Tensor) -> torch.Tensor:
        """q_enc, q_dec: [M, N_q, dim]; task_embed: [M, 1, dim] -> Q_w [M, N_q, dim]."""
        fused = self.fuse(torch.cat([self.enc_proj(q_enc), self.dec_proj(q_dec)], dim=2))
        task = task_embed.expand(-1, q_dec.shape[1], -1)
        return self.confidence(torch.cat([fused, task], dim=2)) * q_dec


class QueriesToMap(nn.Module):
    """Queries become channels: LN -> Linear(dim -> d*h*w) -> LReLU, reshape to [N_q, d, h, w], then a plain
    3x3x3 conv N_q -> out_channels (no bias, no weight standardization) = Q_d, which replaces the bottleneck."""

    def __init__(self, num_queries: int, dim: int, bottleneck_size: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        self.bottleneck_size = tuple(bottleneck_size)
        d, h, w = self.bottleneck_size
        self.proj = _ln_linear_act(dim, d * h * w, nn.LeakyReLU(0.1, inplace=True))
        self.conv = nn.Conv3d(num_queries, out_channels, 3, padding=1, bias=False)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """queries: [M, N_q, dim] -> Q_d [M, out_channels, d, h, w]."""
        m, n = queries.shape[:2]
        return self.conv(self.proj(queries).view(m, n, *self.bottleneck_size))
