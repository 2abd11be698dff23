"""Late fusion: one classifier per modality, their logits combined over the present ones.

Each head must stand on its own, so a missing input simply removes a vote instead of
shifting a joint representation (decision-level fusion, e.g. Snoek et al. 2005); the price
is that cross-modal interactions are invisible. Unlike the other strategies it ends in logits,
so it takes ``num_outputs`` and sets ``produces_logits`` for the model to skip its own head, and
it returns each input's logits too (absent rows zeroed), for auxiliary losses that should be
weighted by ``present`` so absent rows teach nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.errors import SchemaError
from tessera.fusion.base import Fusion, FusionOutput, masked_softmax, pooled_present, presence_matrix, register_fusion

COMBINES = ("mean", "learned", "stacking")


def unimodal_head(in_dim: int, hidden: int, num_outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs)
    )


@register_fusion("late")
class LateFusion(Fusion):
    produces_logits = True

    def __init__(
        self,
        input_dims: dict[str, int],
        num_outputs: int,
        combine: str = "mean",
        hidden: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if combine not in COMBINES:
            raise SchemaError(f"late fusion: combine must be one of {list(COMBINES)}, got {combine!r}")
        self.names = list(input_dims)
        self.combine = combine
        self.heads = nn.ModuleDict({n: unimodal_head(d, hidden, num_outputs, dropout) for n, d in input_dims.items()})
        m = len(self.names)
        if combine == "learned":
            self.modality_logit = nn.Parameter(torch.zeros(m))
        elif combine == "stacking":
            # Presence flags let the stacker tell "absent" from "all-zero logits".
            self.stacker = nn.Linear(m * num_outputs + m, num_outputs)
        self.output_dim = num_outputs

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        here = presence_matrix(present, self.names)  # (B, M)
        logits = torch.stack(
            [self.heads[n](pooled_present(features[n], masks[n], present[n])) for n in self.names], dim=1
        )  # (B, M, K)
        logits = torch.where(here.unsqueeze(-1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
        unimodal = {n: logits[:, i] for i, n in enumerate(self.names)}
        if self.combine == "mean":
            weights = here.to(logits.dtype) / here.sum(dim=1, keepdim=True).clamp(min=1).to(logits.dtype)
        elif self.combine == "learned":
            weights = masked_softmax(self.modality_logit.expand(len(here), -1), here)
        else:
            return FusionOutput(self.stacker(torch.cat([logits.flatten(1), here.to(logits.dtype)], dim=1)), unimodal)
        return FusionOutput((weights.unsqueeze(-1) * logits).sum(dim=1), unimodal)
