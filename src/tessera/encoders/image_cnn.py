"""A small from-scratch CNN for images, the default when no pretrained backbone is wanted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from tessera.encoders.base import Encoder, register_encoder, zero_absent

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


@register_encoder("image_cnn")
class ImageCNN(Encoder):
    """(B, C, H, W) -> (B, dim).

    A stride-2 stem and three pool+conv stages shrink 224x224 to 14x14 cheaply on CPU,
    while 28x28 still ends at 2x2 (``ceil_mode``), so BatchNorm never sees a single value.
    """

    def __init__(self, in_channels: int, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.output_dim = dim
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width, stride=2),
            nn.MaxPool2d(2, ceil_mode=True),
            conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            conv_bn_relu(2 * width, 4 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            conv_bn_relu(4 * width, 8 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(8 * width, dim)

    def encode(self, images: Tensor) -> Tensor:
        """Images without a ``ModalityBatch`` around them: VideoFrames feeds it frames."""
        return self.proj(self.features(images))

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        return zero_absent(self.encode(batch.data), batch.present), None
