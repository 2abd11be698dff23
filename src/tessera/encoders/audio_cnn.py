"""A 2D CNN over log-mel spectrograms, the default audio encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from tessera.encoders.base import Encoder, masked_mean, register_encoder
from tessera.encoders.image_cnn import conv_bn_relu

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


@register_encoder("audio_cnn")
class AudioCNN(Encoder):
    """log-mel (B, n_mels, frames) + frame mask -> (B, dim).

    Padding frames are zeroed before the first conv and after every stage (with the mask
    pooled alongside the features), so they look exactly like the convs' own zero padding:
    how much padding follows a clip does not change its encoding (in eval mode), and the
    final average runs over valid time steps only.
    """

    def __init__(self, n_mels: int, dim: int = 128, width: int = 16) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.output_dim = dim
        widths = [1, width, 2 * width, 4 * width, 8 * width]
        # A stride-2 stem, as in ImageCNN: full-resolution 3x3 convs over a 112x112 log-mel
        # cost ~4x more and made AV-MNIST epochs take an hour on 2 cores.
        self.stages = nn.ModuleList(
            conv_bn_relu(cin, cout, stride=2 if i == 0 else 1) for i, (cin, cout) in enumerate(zip(widths, widths[1:]))
        )
        self.proj = nn.Linear(8 * width, dim)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        x = batch.data.unsqueeze(1)  # (B, 1, n_mels, frames)
        mask = batch.mask if batch.mask is not None else batch.present.unsqueeze(1).expand(-1, x.shape[-1])
        mask = mask & batch.present.unsqueeze(1)
        x = x * mask[:, None, None, :].to(x.dtype)
        for i, stage in enumerate(self.stages):
            if i:  # downsample features and mask together; zeros after ReLU never win a max
                x = F.max_pool2d(x, 2, ceil_mode=True)
                mask = F.max_pool1d(mask.unsqueeze(1).float(), 2, ceil_mode=True).squeeze(1).bool()
            x = stage(x)
            if i == 0:  # the stride-2 stem halves time too: a step is valid if it saw a valid frame
                mask = F.max_pool1d(mask.unsqueeze(1).float(), 2, ceil_mode=True).squeeze(1).bool()
            x = x * mask[:, None, None, :].to(x.dtype)
        tokens = self.proj(x.mean(dim=2).transpose(1, 2))  # mean over mel bins -> (B, T', dim)
        return masked_mean(tokens, mask), None
