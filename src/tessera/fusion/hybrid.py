"""Hybrid fusion: a joint (concat) classifier and per-modality classifiers, blended by a learned α.

The joint path captures cross-modal interactions, the late path stays useful when inputs go
missing; learning α lets the data decide the mix (hybrid fusion as surveyed in Atrey et al.
2010). Like late fusion it ends in logits, needs ``num_outputs`` and returns the late path's
per-input logits.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.fusion.base import Fusion, FusionOutput, register_fusion
from tessera.fusion.concat import ConcatFusion
from tessera.fusion.late import LateFusion


@register_fusion("hybrid")
class HybridFusion(Fusion):
    produces_logits = True

    def __init__(
        self,
        input_dims: dict[str, int],
        num_outputs: int,
        hidden: int = 128,
        late_hidden: int = 64,
        combine: str = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.intermediate = ConcatFusion(input_dims, hidden=hidden, dropout=dropout)
        self.intermediate_head = nn.Linear(hidden, num_outputs)
        self.late = LateFusion(input_dims, num_outputs, combine=combine, hidden=late_hidden, dropout=dropout)
        self.alpha_logit = nn.Parameter(torch.zeros(()))  # α = 0.5 at the start
        self.output_dim = num_outputs

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit)

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        joint = self.intermediate_head(self.intermediate(features, masks, present).fused)
        alpha = self.alpha
        late = self.late(features, masks, present)
        return FusionOutput(alpha * joint + (1 - alpha) * late.fused, late.unimodal_logits)
