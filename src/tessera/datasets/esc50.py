"""ESC-50 environmental sounds: one row per 5 s clip, the category (50 classes) as target.

ESC-50 ships five folds built so that clips cut from the same source recording
(``src_file``) never sit in two folds; literature numbers are fold cross-validation.
The data home may hold all 2,000 clips or only the shared subset (fold 4 plus a few),
where a fold split would leave almost nothing to train on. So the default split
follows the same rule as the folds inside whatever is present: per category, whole
source recordings are shuffled with a seed and dealt to test and val until each has
about 20 % of that category's clips, the rest is train. ``split_by="fold"`` gives the
official single-fold protocol instead (``test_fold`` test, ``val_fold`` val).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tessera.datasets.build import Built
from tessera.errors import SchemaError, TesseraError
from tessera.tasks import Multiclass

VERSION = 1
SOURCES = ("esc50",)

# 64 mel bands, 64 ms window, 20 ms hop: 250 frames cover the whole 5 s clip.
AUDIO_OPTIONS = {
    "sample_rate": 16000, "n_mels": 64, "n_fft": 1024, "hop_length": 320, "frames": 250, "max_seconds": 5.0,
}


def load_meta(home: Path) -> pd.DataFrame:
    """``meta.csv`` with an absolute ``path`` per clip; absent clips are an error, not a skip."""
    folder = home / "esc50_subset"
    meta = pd.read_csv(folder / "meta.csv", dtype={"src_file": str, "take": str})
    needed = {"filename", "fold", "target", "category", "src_file"}
    if not needed <= set(meta.columns):
        raise TesseraError(f"{folder / 'meta.csv'} needs columns {sorted(needed)}, has {list(meta.columns)}")
    meta["path"] = [str(folder / f) for f in meta["filename"]]
    absent = [p for p in meta["path"] if not Path(p).is_file()]
    if absent:
        raise TesseraError(f"{len(absent)} ESC-50 clip(s) listed in meta.csv are missing, e.g. {absent[:3]}")
    return meta


def source_split(meta: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """Deal whole source recordings per category to the splits in ``fractions``; the rest is "train".

    Recordings are offered in a seeded order to each split in turn; a split takes one
    when that brings its clip count closer to ``fraction * clips in the category``.

    Grouping by ``src_file`` keeps takes of one recording (e.g. 1-17367-A and -B) on one
    side, the leak ESC-50's own folds avoid. Categories are visited in sorted order with
    one generator, so the result depends only on the rows and the seed.
    """
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=meta.index, dtype=object)
    for _, rows in sorted(meta.groupby("category"), key=lambda kv: kv[0]):
        groups = sorted(rows["src_file"].unique())
        rng.shuffle(groups)
        goals = {name: round(frac * len(rows)) for name, frac in fractions.items()}
        have = dict.fromkeys(goals, 0)
        for group in groups[:-1]:  # the last recording always stays in train, so every class is learnable
            members = rows.index[rows["src_file"] == group]
            # A split takes the group only if that brings its count closer to its goal.
            name = next((n for n in goals if have[n] + len(members) / 2 < goals[n]), None)
            if name is not None:
                split[members] = name
                have[name] += len(members)
    return split


def build(
    home: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    split_by: str = "source",
    seed: int = 0,
    test_fold: int = 4,
    val_fold: int = 5,
) -> Built:
    meta = load_meta(home)
    if split_by == "source":
        split = source_split(meta, {"test": 0.2, "val": 0.2}, seed)
        rule = (
            f"per category, whole source recordings (`src_file`) shuffled with seed {seed} and offered to test, "
            "then val, each taking a recording while that brings it closer to 20 % of the category's clips; "
            "the rest is train"
        )
    elif split_by == "fold":
        split = pd.Series("train", index=meta.index, dtype=object)
        split[meta["fold"] == val_fold] = "val"
        split[meta["fold"] == test_fold] = "test"
        rule = f"official folds: fold {test_fold} is test, fold {val_fold} is val, the other folds are train"
    else:
        raise SchemaError(f"esc50 split_by must be 'source' or 'fold', got {split_by!r}")
    frame = pd.DataFrame(
        {
            "audio": meta["path"],
            "category": meta["category"].astype(str),
            "class_id": meta["target"].astype(int),
            "fold": meta["fold"].astype(int),
            "src_file": meta["src_file"].astype(str),
            "take": meta["take"].astype(str) if "take" in meta else "",
            "split": split.values,
        }
    )
    schema = {
        "target": "category",
        "task": Multiclass.name,
        "split": "split",
        "inputs": {"audio": {"modality": "audio", "column": "audio", "options": dict(AUDIO_OPTIONS)}},
        "ignore": ["class_id", "fold", "src_file", "take"],
    }
    folds = ", ".join(f"fold {f}: {n}" for f, n in sorted(frame["fold"].value_counts().items()))
    return Built(frame, schema, {"split_rule": rule, "n_clips": len(frame), "folds": folds,
                                 "n_categories": frame["category"].nunique()})
