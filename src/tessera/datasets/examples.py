"""The README's sample files: a few hundred real product rows with their photos, under ``examples/``.

Every command in the README names a file that exists after ``tessera data examples``
(issue 18: a newcomer's first commands failed on ``products.csv``, ``new.csv`` and
``dog.jpg``, which nobody had). The rows are Myntra catalogue products from the data
home's ``fashion_products`` (MIT, as its Kaggle page gives it; the photos and product names
belong to Myntra and the brands), five sub-categories so that a model trained on 300 rows
in seconds has something to learn. The files are written, not committed, because the data
home's licence terms ask that its data stay out of the repository.

Written (all paths relative to the folder, so the folder can move):

* ``products.csv``: 300 rows, ``image`` (``images/<id>.jpg``), ``title``, ``gender``,
  ``colour``, ``season``, ``usage``, ``label`` (the sub-category) and ``split``;
* ``test.csv``: 100 other labelled rows, all in the test split;
* ``new_products.csv``: 20 other rows without a label, to predict;
* ``query.jpg``: one more product photo, to search with;
* ``README.md``: where the rows come from and their licence.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from tessera.datasets.home import data_home
from tessera.errors import DataError
from tessera.files import atomic_dir

SOURCE = "fashion_products"
CLASSES = ["Topwear", "Shoes", "Bags", "Bottomwear", "Watches"]
COLUMNS = {"productDisplayName": "title", "baseColour": "colour", "subCategory": "label"}
SIZES = {"products": 300, "test": 100, "new_products": 20}

CARD = """# Sample data for the README's commands

Written by `tessera data examples` from the data home's `fashion_products` table: {rows} Myntra
catalogue products (60x80 JPEG photos, titles and attributes) in five sub-categories
({classes}), drawn with seed {seed}.

- `products.csv`: training table (`label` is the sub-category, `split` is train/val/test);
- `test.csv`: other labelled rows; `new_products.csv`: other rows without a label;
- `query.jpg`: one more photo, for `tessera search --image`.

Licence: MIT, as the Kaggle dataset "Fashion Product Images (Small)" (Param Aggarwal) gives it.
The photos and product names belong to Myntra and the brands.
"""


def write_examples(out: str | os.PathLike = "examples", *, home: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Write the sample files to ``out`` (replaced whole, atomically); returns the folder."""
    source = Path(home if home is not None else data_home()) / SOURCE
    table_path = source / "table.csv"
    if not table_path.is_file():
        raise DataError(
            f"the sample data is drawn from {table_path}, which does not exist: set TESSERA_DATA to the data home "
            f"holding {SOURCE}/ (in this repository's checkout: TESSERA_DATA=../shared/data)"
        )
    frame = pd.read_csv(table_path)
    frame = frame[frame["subCategory"].isin(CLASSES)].rename(columns=COLUMNS).drop(columns=["id"])
    total = sum(SIZES.values()) + 1
    picked = _stratified_sample(frame, total, seed)
    parts, start = {}, 0
    for name, n in SIZES.items():
        parts[name] = picked.iloc[start : start + n].reset_index(drop=True)
        start += n
    query = picked.iloc[start]
    parts["test"] = parts["test"].assign(split="test")
    parts["new_products"] = parts["new_products"].drop(columns=["split", "label"])
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for name, part in parts.items():
            for rel in part["image"]:
                shutil.copyfile(source / rel, tmp / rel)
            part.to_csv(tmp / f"{name}.csv", index=False)
        shutil.copyfile(source / query["image"], tmp / "query.jpg")
        (tmp / "README.md").write_text(CARD.format(rows=total, classes=", ".join(CLASSES), seed=seed))
    return out


def _stratified_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows with the classes in equal shares, shuffled: every part then has every class."""
    per_class = -(-n // len(CLASSES))
    picked = frame.groupby("label", group_keys=False).sample(n=per_class, random_state=seed)
    return picked.sample(frac=1.0, random_state=seed).head(n).reset_index(drop=True)
