"""A transformer over time patches of a log-mel spectrogram, for token-level fusion."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.encoders.base import Encoder, MaskedTransformer, register_encoder

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


@register_encoder("audio_transformer")
class AudioTransformer(Encoder):
    """log-mel (B, n_mels, frames) -> tokens (B, ceil(frames / patch_frames), dim) + mask.

    Each token is a full-height strip of ``patch_frames`` frames, so the frame mask maps
    directly to a token mask: a token is valid if any of its frames is.
    """

    def __init__(
        self,
        n_mels: int,
        frames: int,
        patch_frames: int = 8,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.patch_frames = patch_frames
        self.output_dim = dim
        self.patch = nn.Linear(n_mels * patch_frames, dim)
        self.pos = nn.Parameter(torch.randn(1, math.ceil(frames / patch_frames), dim) * 0.02)
        self.transformer = MaskedTransformer(dim, depth, heads, dropout)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        x, (b, n_mels, frames) = batch.data, batch.data.shape
        mask = batch.mask if batch.mask is not None else torch.ones(b, frames, dtype=torch.bool, device=x.device)
        mask = mask & batch.present.unsqueeze(1)
        x = x * mask.unsqueeze(1).to(x.dtype)  # padding frames inside a valid patch must not count
        pad = -frames % self.patch_frames
        x, mask = F.pad(x, (0, pad)), F.pad(mask, (0, pad))
        n = x.shape[-1] // self.patch_frames
        if n > self.pos.shape[1]:
            limit = self.pos.shape[1] * self.patch_frames
            raise ValueError(f"got {frames} frames; this encoder was built for at most {limit}")
        x = x.reshape(b, n_mels, n, self.patch_frames).permute(0, 2, 1, 3).reshape(b, n, -1)
        tokens_mask = mask.reshape(b, n, self.patch_frames).any(dim=-1)
        return self.transformer(self.patch(x) + self.pos[:, :n], tokens_mask), tokens_mask
