"""An independent referee for generated images: a classifier trained on real images only.

Generated samples are judged by a network that never saw a generated image: its class
accuracy on them says whether the prompt's class was drawn, its penultimate features give
a Fréchet distance (the FID recipe with this classifier standing in for Inception, whose
weights are not available offline) and a per-class diversity (mean pairwise feature
distance within a class: a model that draws one image per class scores near zero).
The same figures on real held-out images are the reference each is read against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.progress import progress_bar


class JudgeNet(nn.Module):
    """A small CNN over uint8 ``(n, c, h, w)`` images; ``features`` is its 128-d penultimate layer."""

    num_features = 128  # read by torchmetrics' FrechetInceptionDistance for a custom extractor

    def __init__(self, channels: int, size: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, self.num_features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.num_features, classes))

    def features(self, images: Tensor) -> Tensor:
        return self.body(images.float() / 127.5 - 1.0)

    def forward(self, images: Tensor) -> Tensor:
        """Features, as torchmetrics' FID calls it; :meth:`logits` for classes."""
        return self.features(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def _nchw(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def train_judge(images: np.ndarray, classes: np.ndarray, *, epochs: int = 2, batch_size: int = 128, seed: int = 0) -> JudgeNet:
    """Fit the referee on real uint8 ``(n, h, w, c)`` images, with random shifts so it judges shapes, not pixels."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = _nchw(images), torch.from_numpy(classes)
    net = JudgeNet(x.shape[1], x.shape[-1], int(classes.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    with progress_bar("judge", steps) as advance:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                idx = order[i : i + batch_size]
                batch = x[idx]
                dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
                batch = torch.roll(batch, shifts=(dy, dx), dims=(2, 3))
                loss = F.cross_entropy(net.logits(batch), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                advance(1, loss=loss.item())
    return net.eval()


@torch.no_grad()
def judge_features(net: JudgeNet, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(features, predicted classes)`` for uint8 ``(n, h, w, c)`` images."""
    x = _nchw(images)
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        f = net.features(x[i : i + batch_size])
        feats.append(f)
        preds.append(net.head(f).argmax(1))
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()


def frechet_distance(net: JudgeNet, real: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between two image sets in the referee's feature space (torchmetrics' FID code)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=net, normalize=False)
    for images, is_real in ((real, True), (generated, False)):
        x = _nchw(images)
        for i in range(0, len(x), 512):
            fid.update(x[i : i + 512], real=is_real)
    return float(fid.compute())


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of rows (0 for fewer than two rows)."""
    if len(features) < 2:
        return 0.0
    from scipy.spatial.distance import pdist

    return float(pdist(features.astype(np.float64)).mean())


@dataclass
class Verdict:
    """What the referee says about a set of images drawn for known classes."""

    accuracy: float
    per_class_accuracy: list[float]
    diversity: list[float]  # mean pairwise feature distance within each class
    seconds: float

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_class_accuracy": self.per_class_accuracy, "diversity": self.diversity}


def judge(net: JudgeNet, images: np.ndarray, classes: np.ndarray) -> Verdict:
    """Class accuracy and per-class diversity of uint8 images meant to show ``classes``."""
    start = time.perf_counter()
    feats, preds = judge_features(net, images)
    labels = sorted(set(classes.tolist()))
    per_class = [float((preds[classes == c] == c).mean()) for c in labels]
    diversity = [mean_pairwise_distance(feats[classes == c]) for c in labels]
    return Verdict(float((preds == classes).mean()), per_class, diversity, time.perf_counter() - start)
