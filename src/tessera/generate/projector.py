"""Projectors: encoder features in, a few vectors in the language model's token-embedding space out.

Both take ``(B, T, D)`` encoder tokens with a validity mask (a one-vector encoder is ``T = 1``)
and return ``(B, K, H)`` prefix embeddings with their mask:

* ``mlp``: LLaVA-1.5's two-layer GELU MLP, applied to each encoder token (``K = T * tokens``).
  With ``tokens > 1`` each encoder token becomes several LM tokens, ClipCap-style, which gives a
  one-vector encoder (a small CNN) more than one word's worth of room.
* ``resampler``: ``tokens`` learned queries cross-attend to the encoder tokens (Flamingo's
  Perceiver resampler; BLIP-2's Q-Former without its text branch), so any number of encoder
  tokens (a Whisper encoder's 1500 frames) costs the LM a fixed ``K = tokens``.

A sample whose input is absent has no valid encoder token; its prefix is fully masked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tessera.errors import SchemaError
from tessera.registry import Registry

PROJECTORS: Registry[nn.Module] = Registry("projector", __name__)


@PROJECTORS.register("mlp")
class MLPProjector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, tokens: int = 1) -> None:
        super().__init__()
        if tokens < 1:
            raise SchemaError(f"projector tokens must be >= 1, got {tokens}")
        hidden = hidden or out_dim
        self.tokens, self.out_dim = tokens, out_dim
        # The LayerNorm first makes the projector indifferent to its encoder's output scale (a frozen
        # random CNN's features differ by a few hundredths; a Whisper encoder's are in the tens).
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim * tokens)
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = x.shape
        out = self.net(x).reshape(b, t * self.tokens, self.out_dim)
        return out, mask.repeat_interleave(self.tokens, dim=1)


class ResamplerLayer(nn.Module):
    """Pre-norm cross-attention from the queries to the encoder tokens, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q: Tensor, kv: Tensor, ignore: Tensor) -> Tensor:
        kv = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=ignore, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


@PROJECTORS.register("resampler")
class Resampler(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, tokens: int = 8, dim: int = 256, heads: int = 4, depth: int = 1
    ) -> None:
        super().__init__()
        if tokens < 1 or depth < 1:
            raise SchemaError(f"resampler tokens and depth must be >= 1, got tokens={tokens}, depth={depth}")
        if dim % heads:
            raise SchemaError(f"resampler dim ({dim}) must be divisible by heads ({heads})")
        self.inp = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(tokens, dim) * dim**-0.5)
        self.layers = nn.ModuleList(ResamplerLayer(dim, heads) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        kv = self.inp(x)
        present = mask.any(dim=1)
        ignore = ~mask
        ignore[:, 0] &= present  # a row with nothing to attend to would give NaN; its output is masked below
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, kv, ignore)
        out = self.out(q)
        return out, present.unsqueeze(1).expand(-1, out.shape[1])


def create_projector(kind: str, in_dim: int, out_dim: int, **options: Any) -> nn.Module:
    """A projector by name; unknown names and options fail listing the known ones."""
    return PROJECTORS.create(kind, in_dim, out_dim, **options)
