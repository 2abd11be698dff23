"""A 2D CNN over log-mel spectrograms, the default audio encoder.

Two architectures, chosen by ``arch`` (saved models record theirs, see
:attr:`~tessera.encoders.base.Encoder.legacy_options`):

* ``v2`` (the default): a 5x5 stride-2 stem, then conv-BN-ReLU-maxpool stages that halve
  both axes and double the channels; at the end the maximum over time of each channel
  *at each frequency band*, flattened. Keeping where in frequency a pattern occurs is what
  tells spoken digits apart (formants); v1 averaged over the mel bins and lost it. On
  AV-MNIST (10,000 training rows, 3 epochs, one thread) it reaches ~69 % audio-only where
  v1 at width 16 reached ~50 %, at about twice v1's training speed (width 8), and beats
  MultiBench's LeNet (60 %, 12 M multiply-adds per clip, ~5 M here).
* ``v1``: a 3x3 stride-2 stem and four stages, features averaged over the mel bins, then
  a masked mean over time: the encoder of models saved before v2.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.encoders.base import Encoder, masked_mean, register_encoder, zero_absent
from tessera.encoders.image_cnn import conv_bn_relu
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

DEFAULT_WIDTH = {"v1": 16, "v2": 8}


def halve(mask: Tensor) -> Tensor:
    """A frame mask after a factor-2 downsampling in time: a step is valid if it saw a valid frame."""
    return F.max_pool1d(mask.unsqueeze(1).float(), 2, ceil_mode=True).squeeze(1).bool()


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Zero the time steps past a clip's end, so they look like the convs' own zero padding."""
    return x * mask[:, None, None, :].to(x.dtype)


@register_encoder("audio_cnn")
class AudioCNN(Encoder):
    """log-mel (B, n_mels, frames) + frame mask -> (B, dim).

    Padding frames are zeroed before the first conv and after every stage (with the mask
    pooled alongside the features), so how much padding follows a clip does not change
    its encoding (in eval mode), and the pooling over time sees valid steps only.
    """

    legacy_options: ClassVar[dict[str, str]] = {"arch": "v1"}

    def __init__(
        self, n_mels: int, dim: int = 128, width: int | None = None, stages: int = 4, arch: Literal["v1", "v2"] = "v2"
    ) -> None:
        super().__init__()
        if arch not in DEFAULT_WIDTH:
            raise SchemaError(f"audio_cnn arch must be one of {sorted(DEFAULT_WIDTH)}, got {arch!r}")
        self.arch = arch
        self.n_mels = n_mels
        self.output_dim = dim
        width = DEFAULT_WIDTH[arch] if width is None else width
        if arch == "v1":
            widths = [1, width, 2 * width, 4 * width, 8 * width]
            # A stride-2 stem, as in ImageCNN: full-resolution 3x3 convs over a 112x112 log-mel
            # cost ~4x more and made AV-MNIST epochs take an hour on 2 cores.
            self.stages = nn.ModuleList(
                conv_bn_relu(cin, cout, stride=2 if i == 0 else 1) for i, (cin, cout) in enumerate(zip(widths, widths[1:]))
            )
            self.proj = nn.Linear(8 * width, dim)
            return
        if stages < 1:
            raise SchemaError(f"audio_cnn stages must be at least 1, got {stages}")
        widths = [width * 2**i for i in range(stages + 1)]
        self.stem = conv_bn_relu(1, width, kernel=5, stride=2)
        self.stages = nn.ModuleList(conv_bn_relu(cin, cout) for cin, cout in zip(widths, widths[1:]))
        bands = n_mels
        for _ in range(stages + 2):  # the stem's stride, then a max-pool before each stage and after the last
            bands = math.ceil(bands / 2)
        self.proj = nn.Linear(widths[-1] * bands, dim)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        x = batch.data.unsqueeze(1)  # (B, 1, n_mels, frames)
        mask = batch.mask if batch.mask is not None else batch.present.unsqueeze(1).expand(-1, x.shape[-1])
        mask = mask & batch.present.unsqueeze(1)
        x = zero_padding(x, mask)
        if self.arch == "v1":
            return self._forward_v1(x, mask), None
        x, mask = self.stem(x), halve(mask)
        for stage in [*self.stages, None]:
            x, mask = F.max_pool2d(x, 2, ceil_mode=True), halve(mask)  # zeros after ReLU never win a max
            x = zero_padding(x, mask)
            if stage is not None:
                x = zero_padding(stage(x), mask)
        # Per channel and frequency band, the strongest response anywhere in time (>= 0 after ReLU,
        # so the zeroed padding never wins); a clip with no valid frame gives zeros.
        pooled = x.amax(dim=-1).flatten(1)  # (B, C * bands)
        return zero_absent(self.proj(pooled), batch.present), None

    def _forward_v1(self, x: Tensor, mask: Tensor) -> Tensor:
        for i, stage in enumerate(self.stages):
            if i:  # downsample features and mask together; zeros after ReLU never win a max
                x = F.max_pool2d(x, 2, ceil_mode=True)
                mask = halve(mask)
            x = stage(x)
            if i == 0:  # the stride-2 stem halves time too
                mask = halve(mask)
            x = zero_padding(x, mask)
        tokens = self.proj(x.mean(dim=2).transpose(1, 2))  # mean over mel bins -> (B, T', dim)
        return masked_mean(tokens, mask)
