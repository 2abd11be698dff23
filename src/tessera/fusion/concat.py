"""Intermediate fusion: concatenate pooled features (absent inputs zeroed) and mix with an MLP.

The presence flags are appended so the MLP can tell "absent" from "all-zero features".
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.fusion.base import Fusion, FusionOutput, pooled_present, presence_matrix, register_fusion


@register_fusion("concat")
class ConcatFusion(Fusion):
    def __init__(self, input_dims: dict[str, int], hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.names = list(input_dims)
        total = sum(input_dims.values()) + len(self.names)
        self.mlp = nn.Sequential(nn.LayerNorm(total), nn.Linear(total, hidden), nn.GELU(), nn.Dropout(dropout))
        self.output_dim = hidden

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        parts = [pooled_present(features[n], masks[n], present[n]) for n in self.names]
        parts.append(presence_matrix(present, self.names).to(parts[0].dtype))
        return FusionOutput(self.mlp(torch.cat(parts, dim=-1)))
