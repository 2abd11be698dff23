"""A small transformer over token ids, trained from scratch with the rest of the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, MaskedTransformer, register_encoder

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


@register_encoder("text_transformer")
class TextTransformer(Encoder):
    """ids (B, L) + attention mask -> tokens (B, L, dim) + mask.

    The batch mask decides which tokens count; ``pad_id`` is only the fallback when a
    batch carries no mask (pretrained tokenizers may pad with a non-zero id).
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        pad_id: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.output_dim = dim
        self.tokens = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(1, max_length, dim) * 0.02)
        self.transformer = MaskedTransformer(dim, depth, heads, dropout)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        ids = batch.data
        mask = batch.mask if batch.mask is not None else ids != self.pad_id
        mask = mask & batch.present.unsqueeze(1)
        x = self.tokens(ids) + self.pos[:, : ids.shape[1]]
        return self.transformer(x, mask), mask
