"""Cross-class query generation (Eq. 2) and single-class focused querying (Eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccq.models.rows import Rows
from ccq.models.transformer import TransformerBlock, init_linear_trunc_normal


class QueryGenerator(nn.Module):
    """Q_enc = the last N_q outputs of self-attention over [class token; TEB; Q_sem].

    With `layers=0` ("w/o Q-Generation") Q_enc is Q_sem itself: no relation between the concepts is modelled.
    """

    def __init__(
        self,
        num_queries: int = 32,
        dim: int = 256,
        mlp_dim: int = 512,
        heads: int = 8,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.semantic = nn.Parameter(torch.randn(1, num_queries, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(layers))

    def forward(self, task_embed: torch.Tensor, class_token: torch.Tensor, rows: Rows) -> torch.Tensor:
        """task_embed: [M, 1, dim], one per row of the images (`rows`); class_token: [B, 1, dim]
        -> Q_enc [M, N_q, dim]."""
        m = task_embed.shape[0]
        queries = self.semantic.expand(m, -1, -1)
        if not self.blocks:
            return queries
        x = torch.cat([rows.spread(class_token), task_embed, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 2:]


class FocusedQuerying(nn.Module):
    """Q_dec = normalize(LN(cross-attention of Q_enc over [Q_enc; F_enc + P]) @ W).

    Keys and values stay fixed across the layers; only the query stream is updated. The image part of the
    keys/values is identical for every task and branch of a sample, so it is normalised and projected once per
    sample and shared by all of them (the official code recomputes it for each).
    """

    def __init__(
        self,
        dim: int = 256,
        mlp_dim: int = 512,
        heads: int = 8,
        layers: int = 4,
        dropout: float = 0.1,
        concat_queries: bool = True,
    ) -> None:
        super().__init__()
        self.concat_queries = concat_queries
        self.proj = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Parameter(dim**-0.5 * torch.randn(dim, dim))
        init_linear_trunc_normal(self)

    def forward(self, queries: torch.Tensor, image_tokens: torch.Tensor, pos: torch.Tensor, rows: Rows) -> torch.Tensor:
        """queries (Q_enc): [M, N_q, dim], one set per row of the images (`rows`); image_tokens: [B, N, dim];
        pos: [1, N, dim] -> Q_dec [M, N_q, dim], unit-norm rows."""
        image_kv = self.proj(image_tokens) + pos
        q = queries
        for block in self.blocks:
            attn = block.attn
            k_img, v_img = attn.project_kv(image_kv, image_kv)
            k, v = rows.spread(k_img), rows.spread(v_img)
            if self.concat_queries:
                k_q, v_q = attn.project_kv(queries, queries)
                k, v = torch.cat([k_q, k], dim=1), torch.cat([v_q, v], dim=1)
            q = block.finish(q, attn.attend(q, k, v))
        return F.normalize(self.norm(q) @ self.out_proj, dim=-1, eps=0.0)
