"""Free Spoken Digit Dataset: one row per recording, the digit as target.

The official split puts takes 0-4 of every speaker and digit in test. A validation set
is carved from the remaining takes by take number rather than at random: takes 5-9
(by default) are val, so val, like test, holds every speaker and digit in equal
numbers and the split is the same on every machine without a seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tessera.datasets.build import Built
from tessera.errors import TesseraError
from tessera.tasks import Multiclass

VERSION = 2  # 2: a transcript column (the digit as an English word) for speech to text
SOURCES = ("fsdd",)

SAMPLE_RATE = 8000
# 112 mel bands x 112 frames, the AV-MNIST spectrogram size. hop 64 samples (8 ms) makes
# 112 frames span 0.9 s, longer than 99 % of FSDD digits (median 0.42 s); a 256-sample
# (32 ms) window is the usual speech analysis length at 8 kHz.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
AUDIO_OPTIONS = {"sample_rate": SAMPLE_RATE, "n_mels": 112, "n_fft": 256, "hop_length": 64, "frames": 112}


def load_metadata(home: Path) -> pd.DataFrame:
    """``metadata.csv`` with an absolute ``path`` per recording; absent files are an error, not a skip."""
    folder = home / "fsdd"
    meta = pd.read_csv(folder / "metadata.csv")
    needed = {"file", "digit", "speaker", "take"}
    if not needed <= set(meta.columns):
        raise TesseraError(f"{folder / 'metadata.csv'} needs columns {sorted(needed)}, has {list(meta.columns)}")
    meta["path"] = [str(folder / f) for f in meta["file"]]
    absent = [p for p in meta["path"] if not Path(p).is_file()]
    if absent:
        raise TesseraError(f"{len(absent)} FSDD recording(s) listed in metadata.csv are missing, e.g. {absent[:3]}")
    meta["digit"] = meta["digit"].astype(int)
    meta["take"] = meta["take"].astype(int)
    return meta


def build(home: Path, out_dir: Path, *, progress: bool = True, val_takes: int = 5) -> Built:
    meta = load_metadata(home)
    split = pd.Series("train", index=meta.index)
    split[meta["take"] < 5] = "test"
    split[(meta["take"] >= 5) & (meta["take"] < 5 + val_takes)] = "val"
    frame = pd.DataFrame(
        {
            "audio": meta["path"],
            "digit": meta["digit"],
            "transcript": [DIGIT_WORDS[d] for d in meta["digit"]],
            "speaker": meta["speaker"].astype(str),
            "take": meta["take"],
            "split": split,
        }
    )
    schema = {
        "target": "digit",
        "task": Multiclass.name,
        "split": "split",
        "inputs": {"audio": {"modality": "audio", "column": "audio", "options": dict(AUDIO_OPTIONS)}},
        "ignore": ["speaker", "take", "transcript"],
    }
    speakers = ", ".join(sorted(frame["speaker"].unique()))
    return Built(frame, schema, {"val_takes": f"5-{4 + val_takes}" if val_takes else "none", "speakers": speakers,
                                 "n_speakers": frame["speaker"].nunique()})
