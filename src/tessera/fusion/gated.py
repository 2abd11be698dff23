"""Gated fusion: a per-sample softmax over present modalities decides how much each one counts.

The weights adapt to the sample, so a noisy or uninformative input can be turned down where
it is unreliable and up where it helps (Gated Multimodal Units, Arevalo et al. 2017); the
masked softmax gives absent inputs weight zero and renormalises over the rest.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.fusion.base import Fusion, FusionOutput, masked_softmax, pooled_present, presence_matrix, register_fusion


@register_fusion("gated")
class GatedFusion(Fusion):
    def __init__(self, input_dims: dict[str, int], dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.names = list(input_dims)
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, dim)) for n, d in input_dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        # No bias on the score: softmax ignores a shift shared by all modalities, so it could not learn.
        self.gate = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.output_dim = dim

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        h = torch.stack(
            [self.proj[n](pooled_present(features[n], masks[n], present[n])) for n in self.names], dim=1
        )  # (B, M, dim)
        h = h + self.modality_embedding
        weights = masked_softmax(self.gate(h).squeeze(-1), presence_matrix(present, self.names))  # (B, M)
        return FusionOutput(self.mlp((weights.unsqueeze(-1) * h).sum(dim=1)))
