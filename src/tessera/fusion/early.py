"""Early fusion: every input's tokens join one sequence that a shared transformer reads.

Attention can then relate any token of one modality to any token of another from the first
layer (the single-stream design of e.g. VisualBERT, Li et al. 2019); a learned type
embedding tells the transformer which modality each token came from.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.encoders.base import MaskedTransformer
from tessera.fusion.base import Fusion, FusionOutput, as_tokens, register_fusion


@register_fusion("early")
class EarlyFusion(Fusion):
    def __init__(
        self, input_dims: dict[str, int], dim: int = 64, depth: int = 2, heads: int = 4, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.names = list(input_dims)
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in input_dims.items()})
        self.type_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.transformer = MaskedTransformer(dim, depth, heads, dropout)
        self.output_dim = dim

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        batch = len(present[self.names[0]])
        tokens = [self.cls.expand(batch, -1, -1)]
        valid = [torch.ones(batch, 1, dtype=torch.bool, device=self.cls.device)]  # [CLS] is never empty
        for i, name in enumerate(self.names):
            x, v = as_tokens(features[name], masks[name], present[name])
            tokens.append(self.proj[name](x) + self.type_embedding[i])
            valid.append(v)
        out = self.transformer(torch.cat(tokens, dim=1), torch.cat(valid, dim=1))
        return FusionOutput(out[:, 0])
