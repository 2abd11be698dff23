"""A small Vision Transformer for images, for token-level (attention) fusion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, MaskedTransformer, register_encoder
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


@register_encoder("image_vit")
class ImageViT(Encoder):
    """(B, C, H, W) -> tokens (B, 1 + N, dim): a [CLS] token then one token per patch.

    ``patch_size`` defaults to 4 for small images (28x28 gives 49 patches) and 16 otherwise
    (224x224 gives 196), which keeps the sequence short enough for CPU training.
    The mask is True for present samples and all False for absent ones.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        patch_size: int | None = None,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        patch_size = patch_size or (4 if image_size <= 64 else 16)
        if image_size % patch_size:
            raise SchemaError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        self.output_dim = dim
        self.patch = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        n_patches = (image_size // patch_size) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + n_patches, dim) * 0.02)
        self.transformer = MaskedTransformer(dim, depth, heads, dropout)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        x = self.patch(batch.data).flatten(2).transpose(1, 2)  # (B, N, dim)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        mask = batch.present.unsqueeze(1).expand(-1, x.shape[1])
        return self.transformer(x, mask), mask
