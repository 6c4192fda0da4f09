"""The transformer block used everywhere in CCQ (official variant: separate LayerNorms on q, k and v inputs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """Linear -> LeakyReLU(0.1) -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, dim] -> [B, N, dim]."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head attention whose q, k and v inputs each get their own LayerNorm before projection.

    Uses `scaled_dot_product_attention` (fused kernels; no [heads, Nq, Nk] probability tensor kept when the
    backend allows it) with the same scale, softmax and attention dropout as the official explicit computation.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def project_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: [B, Nk, dim] -> the projected keys and values, [B, Nk, dim] each."""
        return self.k(self.norm_k(k)), self.v(self.norm_v(v))

    def attend(self, q: torch.Tensor, k_proj: torch.Tensor, v_proj: torch.Tensor) -> torch.Tensor:
        """q: [B, Nq, dim] (raw), k_proj, v_proj: [B, Nk, dim] (projected) -> [B, Nq, dim]."""
        b, nq, c = q.shape
        h = self.heads
        qh = self.q(self.norm_q(q)).view(b, nq, h, c // h).transpose(1, 2)
        kh = k_proj.view(b, -1, h, c // h).transpose(1, 2)
        vh = v_proj.view(b, -1, h, c // h).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=p)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, nq, c)))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: [B, Nq, dim], k, v: [B, Nk, dim] -> [B, Nq, dim]."""
        return self.attend(q, *self.project_kv(k, v))


class TransformerBlock(nn.Module):
    """q <- q + Attn(q, k, v); q <- q + MLP(LN(q)). No pre-norm beyond the attention's own q/k/v norms."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, dropout)

    def finish(self, q: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual update after attention: [B, Nq, dim] -> [B, Nq, dim]."""
        q = q + attended
        return q + self.mlp(self.norm(q))

    def forward(self, q: torch.Tensor, kv: torch.Tensor | None = None, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention when kv is None. q: [B, Nq, dim]; kv: [B, Nk, dim]; pos: [1 or B, Nk, dim], added to keys
        and values only (never to queries), as the official code does. Returns [B, Nq, dim]."""
        kv = q if kv is None else kv
        if pos is not None:
            kv = kv + pos
        return self.finish(q, self.attn(q, kv, kv))


def init_linear_trunc_normal(module: nn.Module, std: float = 0.02) -> None:
    """The official init of its image transformer and querying decoder: Linear weights trunc-normal(0.02),
    biases 0; LayerNorms weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
