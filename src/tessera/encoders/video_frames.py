"""Video as a sequence of independently encoded frames, then mixed over time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, MaskedTransformer, masked_mean, register_encoder
from tessera.encoders.image_cnn import ImageCNN
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


@register_encoder("video_frames")
class VideoFrames(Encoder):
    """(B, F, C, H, W) + frame mask -> tokens (B, F, dim) + mask, or (B, dim) with ``temporal="mean"``.

    Only valid frames go through the CNN: padding frames cost nothing and cannot skew
    BatchNorm statistics. Their slots stay zero and masked.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 128,
        temporal: Literal["transformer", "mean"] = "transformer",
        depth: int = 1,
        heads: int = 4,
        width: int = 32,
        max_frames: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if temporal not in ("transformer", "mean"):
            raise SchemaError(f"temporal must be 'transformer' or 'mean', got {temporal!r}")
        self.temporal = temporal
        self.output_dim = dim
        self.frame = ImageCNN(in_channels, dim, width)
        if temporal == "transformer":
            self.pos = nn.Parameter(torch.randn(1, max_frames, dim) * 0.02)
            self.transformer = MaskedTransformer(dim, depth, heads, dropout)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        video = batch.data
        b, f = video.shape[:2]
        mask = batch.mask if batch.mask is not None else torch.ones(b, f, dtype=torch.bool, device=video.device)
        mask = mask & batch.present.unsqueeze(1)
        x = video.new_zeros(b, f, self.output_dim)
        if mask.any():
            x = x.masked_scatter(mask.unsqueeze(-1), self.frame.encode(video[mask]))
        if self.temporal == "mean":
            return masked_mean(x, mask), None
        if f > self.pos.shape[1]:
            raise ValueError(f"got {f} frames; this encoder was built for at most max_frames={self.pos.shape[1]}")
        return self.transformer(x + self.pos[:, :f], mask), mask
