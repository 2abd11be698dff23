"""The synthetic generator: real media files, and a label that needs image and audio together."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from PIL import Image

from tessera.datasets import make_synthetic, prepare
from tessera.datasets.synthetic import COLORS
from tessera.schema import Schema


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    table = make_synthetic(out, n=600, seed=0)
    return out, pd.read_csv(table)


def shape_is_square(path, color: str) -> int:
    """Read the shape back from the pixels: a square fills its bounding box, a circle ~79 % of it."""
    rgb = np.array(Image.open(path).convert("RGB")).astype(float)
    ys, xs = np.nonzero(np.linalg.norm(rgb - COLORS[color], axis=2) < 50)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return int(len(ys) / box > 0.9)


def tone_is_high(path) -> int:
    wave, sr = sf.read(path)
    spectrum = np.abs(np.fft.rfft(wave))
    return int(np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()] > 650)


def best_accuracy(feature: pd.Series, label: pd.Series) -> float:
    """Accuracy of the best classifier that sees only ``feature`` (majority label per value)."""
    return float(label.groupby(feature).agg(lambda s: s.value_counts().iloc[0]).sum() / len(label))


def test_writes_real_files(synth):
    out, frame = synth
    assert len(frame) == 600
    assert {"image", "audio", "text", "x1", "x2", "color", "label", "split"} <= set(frame.columns)
    assert frame["split"].value_counts().to_dict() == {"train": 420, "val": 90, "test": 90}
    assert not frame["image"].str.startswith("/").any(), "paths are relative to the table"
    with Image.open(out / frame["image"][0]) as img:
        assert img.format == "PNG" and img.size == (32, 32)
    info = sf.info(out / frame["audio"][0])
    assert (info.format, info.samplerate, info.channels) == ("WAV", 8000, 1)
    schema = yaml.safe_load((out / "schema.yaml").read_text())
    Schema.from_dict(schema).validate(frame)


def test_label_rule_and_media_carry_the_bits(synth):
    out, frame = synth
    assert (frame["label"] == 2 * frame["bit_image"] + frame["bit_audio"]).all()
    sample = frame.sample(120, random_state=0)
    squares = [shape_is_square(out / p, c) for p, c in zip(sample["image"], sample["color"])]
    assert squares == sample["bit_image"].tolist()
    assert [tone_is_high(out / p) for p in sample["audio"]] == sample["bit_audio"].tolist()


def test_single_modalities_are_capped_and_fusion_is_not(synth):
    _, frame = synth
    y = frame["label"]
    text_word = frame["text"].str.contains("boxy").astype(int)
    x1_bit = (frame["x1"] > 0.5).astype(int)
    image_only = best_accuracy(frame["bit_image"], y)  # a perfect reading of the image
    audio_only = best_accuracy(frame["bit_audio"], y)
    assert 0.45 < image_only < 0.6 and 0.45 < audio_only < 0.6
    assert best_accuracy(text_word, y) < 0.45
    assert best_accuracy(x1_bit, y) < 0.45
    assert best_accuracy(frame["color"], y) < 0.35
    assert 0.5 < (text_word == frame["bit_image"]).mean() < 0.85, "text is a noisy hint, not the answer"
    assert best_accuracy(frame["bit_image"] * 2 + frame["bit_audio"], y) == 1.0


def test_same_seed_same_table(tmp_path):
    a = pd.read_csv(make_synthetic(tmp_path / "a", n=50, seed=3))
    b = pd.read_csv(make_synthetic(tmp_path / "b", n=50, seed=3))
    c = pd.read_csv(make_synthetic(tmp_path / "c", n=50, seed=4))
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a" / a["image"][7]).read_bytes() == (tmp_path / "b" / b["image"][7]).read_bytes()
    assert not a["label"].equals(c["label"])


def test_synthetic_recipe_table_resolves_its_media(tmp_path):
    prepared = prepare("synthetic", cache_dir=tmp_path, progress=False, n=40)
    frame = pd.read_parquet(prepared.table_path)
    assert prepared.rows == {"train": 28, "val": 6, "test": 6}
    assert (prepared.path / frame["image"][0]).is_file() and (prepared.path / frame["audio"][0]).is_file()
    Schema.from_dict(prepared.schema).validate(frame)
    assert "label = 2 * bit_image + bit_audio" in prepared.card_path.read_text()
