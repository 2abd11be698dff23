"""Encoders for grouped numeric and categorical columns.

Missing values reach the encoders as 0 (numeric) or id 0 (categorical) plus a False in
the mask; each encoder makes the mask visible to the model so that "missing" is
something it can learn from rather than a silent zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, MaskedTransformer, register_encoder, zero_absent
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


def _valid(batch: ModalityBatch) -> Tensor:
    mask = batch.mask if batch.mask is not None else torch.ones_like(batch.data, dtype=torch.bool)
    return mask & batch.present.unsqueeze(1)


@register_encoder("numeric_mlp")
class NumericMLP(Encoder):
    """Standardised values (B, n) + mask -> (B, dim), from values and mask side by side."""

    def __init__(self, n_features: int, dim: int = 128, hidden: int = 128) -> None:
        super().__init__()
        self.output_dim = dim
        self.net = nn.Sequential(nn.Linear(2 * n_features, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        mask = _valid(batch)
        x = torch.cat([batch.data * mask, mask.to(batch.data.dtype)], dim=1)
        return zero_absent(self.net(x), batch.present), None


@register_encoder("categorical_embedding")
class CategoricalEmbedding(Encoder):
    """Category ids (B, n) -> (B, dim): one embedding table per column, concatenated, then an MLP.

    ``cardinalities[j]`` is the number of ids column j can hold, including 0 (missing)
    and 1 (unknown), i.e. its largest id + 1.
    """

    def __init__(self, cardinalities: Sequence[int], dim: int = 128, emb_dim: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.output_dim = dim
        self.embeddings = nn.ModuleList(nn.Embedding(card, emb_dim) for card in cardinalities)
        self.net = nn.Sequential(nn.Linear(len(cardinalities) * emb_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        ids = batch.data.masked_fill(~_valid(batch), 0)  # masked-out means missing, whatever id is stored
        x = torch.cat([emb(ids[:, j]) for j, emb in enumerate(self.embeddings)], dim=1)
        return zero_absent(self.net(x), batch.present), None


@register_encoder("ft_transformer")
class FTTransformer(Encoder):
    """FT-Transformer: one token per feature plus [CLS] -> tokens (B, 1 + n, dim) + mask.

    Built for numeric columns (``n_numeric``) or categorical columns (``cardinalities``),
    because each input arrives as its own batch. A numeric feature j becomes
    ``value * W_j + b_j``, a categorical one its embedding; missing features are masked
    out of attention instead of being fed as fake zeros.
    """

    def __init__(
        self,
        n_numeric: int = 0,
        cardinalities: Sequence[int] = (),
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if (n_numeric > 0) == (len(cardinalities) > 0):
            raise SchemaError("ft_transformer needs either n_numeric > 0 or cardinalities, not both or neither")
        self.n_numeric = n_numeric
        self.output_dim = dim
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        if n_numeric:
            self.weight = nn.Parameter(torch.randn(n_numeric, dim) * 0.02)
            self.bias = nn.Parameter(torch.randn(n_numeric, dim) * 0.02)
        else:
            self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card in cardinalities)
        self.transformer = MaskedTransformer(dim, depth, heads, dropout)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        valid = _valid(batch)
        if self.n_numeric:
            values = batch.data.masked_fill(~valid, 0.0)
            x = values.unsqueeze(-1) * self.weight + self.bias
        else:
            ids = batch.data.masked_fill(~valid, 0)
            x = torch.stack([emb(ids[:, j]) for j, emb in enumerate(self.embeddings)], dim=1)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        mask = torch.cat([batch.present.unsqueeze(1), valid], dim=1)
        return self.transformer(x, mask), mask
