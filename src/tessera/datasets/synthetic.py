"""A small synthetic multimodal table whose label needs two modalities, for tests and demos.

``label = 2 * bit_image + bit_audio``: the image shows a circle (bit 0) or a square
(bit 1), the audio is a low (250-350 Hz, bit 0) or high (1-1.4 kHz, bit 1) tone. Either
modality alone pins down one bit, so it can reach at most 50 % (the other bit is a coin
flip), while image + audio together determine the label exactly (100 %). The other
columns carry weaker, partial signal on purpose:

* ``text`` names the shape ("round" / "boxy"), but the word is wrong 25 % of the time:
  at most 0.75 * 0.5 = 37.5 % alone.
* ``x1`` is ``bit_audio`` plus Gaussian noise (sd 0.8); thresholding it at 0.5 is right
  about 73 % of the time: at most ~36.5 % alone. ``x2`` is pure noise.
* ``color`` (categorical) is the shape's colour, drawn independently of the label.

So a test can check that every single modality is capped near 50 % while fusing image
and audio reaches ~100 %. Files are real PNG and WAV files referenced by relative paths,
exactly like a user's own folder of media with a CSV.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tessera.datasets.build import Built, png_bytes, wav_bytes
from tessera.tasks import Multiclass

VERSION = 1
SOURCES: tuple[str, ...] = ()  # generated; needs no raw data

IMAGE_SIZE = 32
SAMPLE_RATE = 8000
CLIP_SECONDS = 0.3
TEXT_FLIP = 0.25
X1_NOISE_SD = 0.8
COLORS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 60, 230)}
FILLER = ("on a plain background", "seen from above", "in the middle", "slightly blurred", "small", "large", "again")
SPLIT_FRACTIONS = (0.7, 0.15)  # train, val; the rest is test

SCHEMA = {
    "target": "label",
    "task": Multiclass.name,
    "split": "split",
    "inputs": {
        "image": {"modality": "image", "options": {"size": IMAGE_SIZE, "channels": 3}},
        "audio": {"modality": "audio", "options": {"sample_rate": SAMPLE_RATE, "n_mels": 32, "n_fft": 256,
                                                   "hop_length": 64, "frames": 40}},
        "text": {"modality": "text"},
        "numeric": {"modality": "numeric", "columns": ["x1", "x2"]},
        "categorical": {"modality": "categorical", "columns": ["color"]},
    },
    "ignore": ["id", "bit_image", "bit_audio"],
}


def make_synthetic(out_dir: str | os.PathLike, n: int = 600, seed: int = 0) -> Path:
    """Write ``images/*.png``, ``audio/*.wav``, ``table.csv`` and ``schema.yaml`` into ``out_dir``.

    Returns the CSV's path; its media paths are relative to ``out_dir``.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bit_image = rng.integers(0, 2, n)
    bit_audio = rng.integers(0, 2, n)
    color = rng.choice(list(COLORS), n)
    order = rng.permutation(n)
    n_train, n_val = (round(f * n) for f in SPLIT_FRACTIONS)
    split = np.empty(n, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"

    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    t = np.arange(int(CLIP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms ramps, so the tone has no clicks
    rows = []
    for i in range(n):
        # Image: a circle or square of random size and place on a noisy grey background.
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(r + 1, IMAGE_SIZE - r - 1, 2)
        if bit_image[i]:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        pixels = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), rng.uniform(100, 160), dtype=np.float64)
        pixels[inside] = COLORS[color[i]]
        pixels += rng.normal(0, 10, pixels.shape)
        (out / "images" / f"{i:05d}.png").write_bytes(png_bytes(np.clip(pixels, 0, 255).round()))
        # Audio: a low or high tone with random pitch, loudness and a little hiss.
        freq = rng.uniform(1000, 1400) if bit_audio[i] else rng.uniform(250, 350)
        wave = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * fade
        wave += rng.normal(0, 0.02, t.shape)
        (out / "audio" / f"{i:05d}.wav").write_bytes(wav_bytes(wave, SAMPLE_RATE))
        # Text: the shape word is right 75 % of the time; says nothing about the sound.
        says_square = bool(bit_image[i]) != (rng.random() < TEXT_FLIP)
        text = f"a {'boxy' if says_square else 'round'} {color[i]} thing {rng.choice(FILLER)}"
        rows.append({
            "id": i,
            "image": f"images/{i:05d}.png",
            "audio": f"audio/{i:05d}.wav",
            "text": text,
            "x1": round(float(bit_audio[i] + rng.normal(0, X1_NOISE_SD)), 4),
            "x2": round(float(rng.normal(0, 1)), 4),
            "color": color[i],
            "label": int(2 * bit_image[i] + bit_audio[i]),
            "split": split[i],
            "bit_image": int(bit_image[i]),
            "bit_audio": int(bit_audio[i]),
        })
    table = out / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    (out / "schema.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    return table


def build(home: Path, out_dir: Path, *, progress: bool = True, n: int = 600, seed: int = 0) -> Built:
    """The prepared table lives next to its media (``media/``), with paths relative to the table."""
    frame = pd.read_csv(make_synthetic(out_dir / "media", n=n, seed=seed))
    for col in ("image", "audio"):
        frame[col] = "media/" + frame[col]
    return Built(frame, SCHEMA, {"n": n, "seed": seed})
