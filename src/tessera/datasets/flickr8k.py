"""Flickr8k (1,000-photo subset): one row per (photo, caption), for image-text retrieval.

There is no target: the task is to match photos and captions. The split is by photo,
so no photo's captions are seen in training and again at test time; 200 photos (all
five captions each) are test, drawn with a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tessera.datasets.build import Built
from tessera.errors import TesseraError

VERSION = 1
SOURCES = ("flickr8k",)


def build(home: Path, out_dir: Path, *, progress: bool = True, n_test_images: int = 200, seed: int = 0) -> Built:
    folder = home / "flickr8k_1k"
    captions = pd.read_csv(folder / "captions.csv")
    if not {"image", "caption"} <= set(captions.columns):
        raise TesseraError(f"{folder / 'captions.csv'} needs columns image, caption; has {list(captions.columns)}")
    captions["path"] = [str(folder / f) for f in captions["image"]]
    images = sorted(captions["image"].unique())
    absent = [str(folder / f) for f in images if not (folder / f).is_file()]
    if absent:
        raise TesseraError(f"{len(absent)} Flickr8k photo(s) listed in captions.csv are missing, e.g. {absent[:3]}")
    if not 0 < n_test_images < len(images):
        raise TesseraError(f"n_test_images must be between 1 and {len(images) - 1}, got {n_test_images}")
    order = np.random.default_rng(seed).permutation(len(images))
    split_of = {images[i]: ("test" if rank < n_test_images else "train") for rank, i in enumerate(order)}
    rank_of = {images[i]: rank for rank, i in enumerate(order)}
    captions["split"] = captions["image"].map(split_of)
    captions["rank"] = captions["image"].map(rank_of)
    captions = captions.sort_values(["split", "rank"], kind="stable", ascending=[False, True])
    frame = pd.DataFrame(
        {
            "image": captions["path"].values,
            "caption": captions["caption"].astype(str).values,
            "image_id": [Path(f).stem for f in captions["image"]],
            "split": captions["split"].values,
        }
    )
    schema = {
        "target": None,
        "task": None,
        "split": "split",
        "inputs": {
            "image": {"modality": "image", "options": {"size": 224, "channels": 3}},
            "caption": {"modality": "text"},
        },
        "ignore": ["image_id"],
    }
    per_image = captions.groupby("image").size()
    return Built(frame, schema, {
        "n_images": len(images),
        "n_test_images": n_test_images,
        "n_train_images": len(images) - n_test_images,
        "seed": seed,
        "captions_per_image": f"{per_image.min()}" if per_image.min() == per_image.max()
        else f"{per_image.min()}-{per_image.max()}",
    })
