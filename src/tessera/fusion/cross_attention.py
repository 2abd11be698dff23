"""Cross-modal attention: each modality's tokens query every other modality's tokens.

Directional pairwise blocks let one modality be re-read in the light of another without
aligning their sequences first (MulT, Tsai et al., ACL 2019). One light block per ordered
pair keeps it cheap; the cost grows with the square of the number of inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.encoders.base import masked_mean
from tessera.errors import SchemaError
from tessera.fusion.base import Fusion, FusionOutput, as_tokens, feed_forward, masked_attention, presence_matrix, register_fusion


class CrossBlock(nn.Module):
    """Pre-norm ``target + attn(target -> source)`` then ``+ FFN``; no source leaves the target as is."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = feed_forward(dim, dropout)

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_valid: torch.Tensor) -> torch.Tensor:
        x = target + masked_attention(self.attn, self.norm_q(target), self.norm_kv(source), source_valid)
        return x + self.ffn(x)


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    def __init__(
        self, input_dims: dict[str, int], dim: int = 64, heads: int = 4, hidden: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if dim % heads:
            raise SchemaError(f"cross_attention: dim ({dim}) must be divisible by heads ({heads})")
        self.names = list(input_dims)
        self.pairs = [(t, s) for t in self.names for s in self.names if t != s]
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in input_dims.items()})
        self.blocks = nn.ModuleDict({f"{t}<-{s}": CrossBlock(dim, heads, dropout) for t, s in self.pairs})
        streams = max(len(self.names) - 1, 1)  # a single input has no partner: its own tokens stand in
        total = len(self.names) * streams * dim + len(self.names)
        self.mlp = nn.Sequential(nn.LayerNorm(total), nn.Linear(total, hidden), nn.GELU(), nn.Dropout(dropout))
        self.output_dim = hidden

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        tokens, valid = {}, {}
        for name in self.names:
            x, valid[name] = as_tokens(features[name], masks[name], present[name])
            tokens[name] = self.proj[name](x)
        pooled = []
        for target in self.names:
            streams = [
                self.blocks[f"{target}<-{s}"](tokens[target], tokens[s], valid[s]) for s in self.names if s != target
            ] or [tokens[target]]
            pooled.append(masked_mean(torch.cat(streams, dim=-1), valid[target]))
        # Presence flags let the MLP tell an absent target from one whose pooled stream is zero.
        pooled.append(presence_matrix(present, self.names).to(pooled[0].dtype))
        return FusionOutput(self.mlp(torch.cat(pooled, dim=-1)))
