"""Captioned images from the data home: Fashion-MNIST and MNIST with paraphrase captions, Flickr8k-1k with its own.

Images come back as uint8 ``(n, size, size, channels)`` arrays with an integer class per
image (``-1`` for Flickr8k, which has none) and the captions that go with each; the
training code turns them into :class:`~tessera.generate.diffusion.TrainData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tessera.datasets.home import data_home
from tessera.errors import SchemaError, TesseraError
from tessera.generate.captions import CAPTIONS
from tessera.generate.diffusion import TrainData

DATASETS = ("fashion_mnist", "mnist", "flickr8k")
FLICKR_TEST_IMAGES, FLICKR_SEED = 200, 0  # the same photo split as the flickr8k recipe


@dataclass
class CaptionedImages:
    """``images`` uint8 (n, size, size, c); ``classes[i]`` the class of image i (or -1);
    ``captions[i]`` the captions that describe image i."""

    images: np.ndarray
    classes: np.ndarray
    captions: list[list[str]]
    class_names: tuple[str, ...]

    def train_data(self) -> TrainData:
        """Every (image, caption) pair, with each distinct caption stored once."""
        prompts = sorted({c for caps in self.captions for c in caps})
        index = {p: i for i, p in enumerate(prompts)}
        pairs = torch.tensor([(i, index[c]) for i, caps in enumerate(self.captions) for c in caps], dtype=torch.long)
        return TrainData(samples=to_unit_range(self.images), prompts=prompts, pairs=pairs)


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, c) to float (n, c, h, w) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def _npz(name: str, root: Path) -> Path:
    path = root / name / f"{name}.npz"
    if not path.is_file():
        raise TesseraError(f"{name} not found at {path}; set TESSERA_DATA to the folder that holds {name}/{name}.npz")
    return path


def load_labelled(
    dataset: str,
    split: Literal["train", "test"] = "train",
    *,
    captions: Literal["train", "heldout"] = "train",
    root: str | Path | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> CaptionedImages:
    """Fashion-MNIST or MNIST, each image captioned with every caption of its class's chosen set.

    The npz files keep each split grouped by class, so a subset is drawn with ``seed``
    (stratified by construction of a random permutation, not the first rows).
    """
    if dataset not in CAPTIONS:
        raise SchemaError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in ("train", "test"):
        raise SchemaError(f"split must be 'train' or 'test', got {split!r}")
    with np.load(_npz(dataset, Path(root) if root else data_home())) as npz:
        x, y = npz[f"x_{split}"], npz[f"y_{split}"].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))[: max_images or None]
    table = CAPTIONS[dataset]
    sets = table.train if captions == "train" else table.heldout
    return CaptionedImages(x[order][..., None], y[order], [list(sets[c]) for c in y[order]], table.classes)


def load_flickr(
    split: Literal["train", "test"] = "train",
    *,
    size: int = 32,
    root: str | Path | None = None,
    max_images: int | None = None,
) -> CaptionedImages:
    """Flickr8k-1k photos, centre-cropped to squares and resized to ``size``, with their five human captions."""
    import pandas as pd
    from PIL import Image

    folder = (Path(root) if root else data_home()) / "flickr8k_1k"
    table = folder / "captions.csv"
    if not table.is_file():
        raise TesseraError(f"Flickr8k-1k not found at {table}; set TESSERA_DATA to the folder that holds flickr8k_1k/")
    frame = pd.read_csv(table)
    names = sorted(frame["image"].unique())
    order = np.random.default_rng(FLICKR_SEED).permutation(len(names))
    chosen = [names[i] for rank, i in enumerate(order) if (rank < FLICKR_TEST_IMAGES) == (split == "test")]
    chosen = chosen[: max_images or None]
    by_image = frame.groupby("image")["caption"].apply(list)
    images = []
    for name in chosen:
        with Image.open(folder / name) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            images.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)))
    return CaptionedImages(np.stack(images), np.full(len(chosen), -1), [list(by_image[n]) for n in chosen], ())
