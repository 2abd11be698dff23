"""Encoders for multichannel series (B, T, C) with a mask of real time steps.

The mask can have gaps (rows of NaN in the source), not only trailing padding, so both
encoders zero invalid steps and feed the mask as an extra channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from tessera.encoders.base import Encoder, masked_mean, register_encoder
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


def _with_mask_channel(batch: ModalityBatch) -> tuple[Tensor, Tensor]:
    x = batch.data
    mask = batch.mask if batch.mask is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    mask = mask & batch.present.unsqueeze(1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return torch.cat([x * m, m], dim=-1), mask


@register_encoder("timeseries_gru")
class TimeseriesGRU(Encoder):
    """(B, T, C) -> (B, dim): the GRU's state after the last valid step.

    Sequences are packed up to their last valid step, so trailing padding is never read;
    samples with no valid step give zeros.
    """

    def __init__(self, channels: int, dim: int = 128, layers: int = 1) -> None:
        super().__init__()
        self.output_dim = dim
        self.gru = nn.GRU(channels + 1, dim, num_layers=layers, batch_first=True)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        x, mask = _with_mask_channel(batch)
        steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        lengths = (mask * steps).amax(dim=1)  # index of the last valid step + 1, 0 if none
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[-1] * (lengths > 0).unsqueeze(1).to(x.dtype), None


@register_encoder("timeseries_cnn")
class TimeseriesCNN(Encoder):
    """(B, T, C) -> (B, dim): same-length 1D convs, then a mean over valid steps.

    Invalid steps are re-zeroed after every layer so they act like the convs' zero padding.
    """

    def __init__(self, channels: int, dim: int = 128, width: int = 64, layers: int = 3, kernel_size: int = 5) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise SchemaError(f"timeseries_cnn kernel_size must be odd to keep the length, got {kernel_size}")
        self.output_dim = dim
        widths = [channels + 1] + [width] * layers
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2), nn.BatchNorm1d(cout), nn.ReLU())
            for cin, cout in zip(widths, widths[1:])
        )
        self.proj = nn.Linear(width, dim)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        x, mask = _with_mask_channel(batch)
        x, m = x.transpose(1, 2), mask.unsqueeze(1).to(x.dtype)  # (B, C+1, T)
        for conv in self.convs:
            x = conv(x) * m
        return masked_mean(self.proj(x.transpose(1, 2)), mask), None
