"""Tensor fusion and its low-rank factorisation: multiplicative interactions between modalities.

Appending a constant 1 to each modality's vector before the outer product keeps every lower-
order term (unimodal, bimodal ...) alongside the full M-way interaction, and it is also what
makes missing inputs easy: an absent modality becomes ``[1, 0, ..., 0]`` and simply drops out.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tessera.errors import SchemaError
from tessera.fusion.base import Fusion, FusionOutput, pooled_present, register_fusion


def with_one(h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``[1, h]`` for present rows and ``[1, 0, ..., 0]`` for absent ones."""
    h = torch.where(present.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))
    return torch.cat([torch.ones_like(h[:, :1]), h], dim=1)


@register_fusion("tensor")
class TensorFusion(Fusion):
    """Tensor Fusion Network (Zadeh et al., EMNLP 2017).

    The flattened product has ``(dim + 1) ** M`` entries, so ``dim`` defaults to the largest
    width (at most 16) that keeps it within ``max_features``; many inputs call for
    ``low_rank_tensor`` instead.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        dim: int | None = None,
        hidden: int = 128,
        dropout: float = 0.1,
        max_features: int = 32768,
    ) -> None:
        super().__init__()
        self.names = list(input_dims)
        m = len(self.names)
        if dim is None:
            dim = min(16, int(math.floor(max_features ** (1 / m) + 1e-9)) - 1)
            while dim > 0 and (dim + 1) ** m > max_features:  # guard against float rounding
                dim -= 1
            if dim < 1:
                raise SchemaError(
                    f"tensor fusion of {m} inputs exceeds max_features={max_features}; use 'low_rank_tensor'"
                )
        size = (dim + 1) ** m
        if size > max_features:
            raise SchemaError(
                f"tensor fusion: (dim + 1) ** {m} inputs = {size} features > max_features={max_features}; "
                "lower dim, raise max_features, or use 'low_rank_tensor'"
            )
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, dim)) for n, d in input_dims.items()})
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(size, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.output_dim = hidden

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        product: torch.Tensor | None = None
        for name in self.names:
            z = with_one(self.proj[name](pooled_present(features[name], masks[name], present[name])), present[name])
            product = z if product is None else (product.unsqueeze(-1) * z.unsqueeze(1)).flatten(1)
        assert product is not None
        return FusionOutput(self.mlp(product))


@register_fusion("low_rank_tensor")
class LowRankTensorFusion(Fusion):
    """Low-rank Multimodal Fusion (Liu et al., ACL 2018).

    The TFN weight tensor is factored into ``rank`` modality-specific factors, so the cost is
    linear in the number of inputs instead of exponential; an absent input contributes the
    factor of the constant 1 alone.
    """

    def __init__(self, input_dims: dict[str, int], dim: int = 64, rank: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.names = list(input_dims)
        self.norm = nn.ModuleDict({n: nn.LayerNorm(d) for n, d in input_dims.items()})
        self.dropout = nn.Dropout(dropout)
        self.factors = nn.ParameterDict(
            {n: nn.Parameter(self._init_factor(rank, d, dim)) for n, d in input_dims.items()}
        )
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.output_dim = dim

    @staticmethod
    def _init_factor(rank: int, d: int, dim: int) -> torch.Tensor:
        """The constant-1 row starts at 1 and the rest at unit output variance.

        Each factor then starts near 1 in scale, so the product over modalities neither
        vanishes nor explodes with many inputs, and an absent input starts out neutral.
        """
        factor = torch.randn(rank, d + 1, dim) / math.sqrt(d)
        factor[:, 0] = 1.0
        return factor

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        fused: torch.Tensor | None = None
        for name in self.names:
            h = self.dropout(self.norm[name](pooled_present(features[name], masks[name], present[name])))
            z = with_one(h, present[name])
            f = torch.einsum("bd,rdo->bro", z, self.factors[name])  # (B, rank, dim)
            fused = f if fused is None else fused * f
        assert fused is not None
        return FusionOutput(torch.einsum("r,bro->bo", self.rank_weights[0], fused) + self.bias)
