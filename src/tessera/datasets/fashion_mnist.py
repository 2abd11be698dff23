"""Fashion-MNIST: 28x28 grayscale clothing photos, the class name as target.

Images are stored in the table as PNG bytes, so the table is self-contained (the raw
data is one ``.npz``, not files a path could point to). The data home keeps each split
grouped by class; rows are shuffled with the seed so the first rows of a split are a
fair sample, and val is a seeded draw of ``n_val`` training images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tessera.datasets.build import Built, png_bytes, track
from tessera.tasks import Multiclass

VERSION = 1
SOURCES = ("fashion_mnist",)

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def build(
    home: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    n_val: int = 5000,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Built:
    """``n_train`` / ``n_test`` keep only the first rows of those (shuffled) splits, for quick builds."""
    with np.load(home / "fashion_mnist" / "fashion_mnist.npz") as npz:
        x_train, y_train, x_test, y_test = (npz[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    rng = np.random.default_rng(seed)
    train_order = rng.permutation(len(x_train))
    test_order = rng.permutation(len(x_test))
    parts = [
        ("train", x_train, y_train, train_order[n_val:][:n_train]),
        ("val", x_train, y_train, train_order[:n_val]),
        ("test", x_test, y_test, test_order[:n_test]),
    ]
    frames = []
    for split, x, y, idx in parts:
        images = [png_bytes(x[i]) for i in track(idx, f"encoding fashion_mnist {split}", progress)]
        frames.append(pd.DataFrame({
            "image": images,
            "label": [CLASSES[int(c)] for c in y[idx]],
            "split": split,
            "source_index": idx.astype(np.int64),
        }))
    frame = pd.concat(frames, ignore_index=True)
    schema = {
        "target": "label",
        "task": Multiclass.name,
        "split": "split",
        "inputs": {"image": {"modality": "image", "options": {"size": 28, "channels": 1}}},
        "ignore": ["source_index"],
    }
    return Built(frame, schema, {"n_val": n_val, "seed": seed, "classes": ", ".join(CLASSES),
                                 "subset": "" if n_train is None and n_test is None else
                                 f" This build keeps only the first {n_train or 'all'} train and {n_test or 'all'} "
                                 "test rows of that order."})
