"""Every recipe on the real raw data: table shape, columns, splits, and AV-MNIST's construction."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from tessera.datasets import prepare
from tessera.datasets.fashion_mnist import CLASSES
from tessera.schema import Schema

REAL = Path(os.environ.get("TESSERA_DATA") or Path(__file__).parents[2].parent / "shared" / "data")
SMALL_AV = dict(n_train=300, n_val=60, n_test=120)

pytestmark = pytest.mark.realdata


def need(*parts: str) -> Path:
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path}; set TESSERA_DATA")
    return path


def check_schema(prepared, frame: pd.DataFrame) -> None:
    """The schema must load with Tessera's own schema code and fit the table."""
    Schema.from_dict(prepared.schema).validate(frame)
    assert prepared.schema_path.is_file() and prepared.card_path.is_file()
    card = prepared.card_path.read_text()
    for section in ("## Construction", "## Rows", "## Columns", "## Schema", "## Build"):
        assert section in card


@pytest.fixture(scope="module")
def av(tmp_path_factory):
    need("mnist", "mnist.npz")
    need("fsdd", "metadata.csv")
    need("esc50_subset", "meta.csv")
    cache = tmp_path_factory.mktemp("cache")
    prepared = prepare("avmnist", data_home=REAL, download=False, cache_dir=cache, progress=False, **SMALL_AV)
    return prepared, pd.read_parquet(prepared.table_path)


@pytest.fixture(scope="module")
def mnist():
    with np.load(need("mnist", "mnist.npz")) as npz:
        return {k: npz[k] for k in npz.files}


def decode_png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


# -- AV-MNIST --------------------------------------------------------------------------------------------
def test_avmnist_shape_and_columns(av):
    prepared, frame = av
    assert prepared.rows == {"train": 300, "val": 60, "test": 120}
    assert list(frame.columns) == [
        "image", "audio", "label", "split", "mnist_index", "fsdd_file", "noise_file", "snr_db", "speaker",
    ]
    assert prepared.schema["target"] == "label" and prepared.schema["task"] == "multiclass"
    assert set(prepared.schema["ignore"]) == {"mnist_index", "fsdd_file", "noise_file", "snr_db", "speaker"}
    assert prepared.schema["inputs"]["audio"]["options"] == {
        "sample_rate": 8000, "n_mels": 112, "n_fft": 256, "hop_length": 64, "frames": 112,
    }
    check_schema(prepared, frame)


def test_avmnist_pairs_share_the_digit(av, mnist):
    _, frame = av
    fsdd_digit = frame["fsdd_file"].map(lambda f: int(Path(f).name.split("_")[0]))
    mnist_label = [
        int(mnist["y_test" if split == "test" else "y_train"][i])
        for split, i in zip(frame["split"], frame["mnist_index"])
    ]
    assert (frame["label"] == fsdd_digit).all()
    assert (frame["label"] == np.array(mnist_label)).all()
    speaker = frame["fsdd_file"].map(lambda f: Path(f).name.split("_")[1])
    assert (speaker == frame["speaker"]).all()


def test_avmnist_test_split_uses_only_test_sources(av, mnist):
    _, frame = av
    take = frame["fsdd_file"].map(lambda f: int(re.search(r"_(\d+)\.wav$", f).group(1)))
    test = frame["split"] == "test"
    assert (take[test] < 5).all(), "test pairs must use FSDD takes 0-4 only"
    assert (take[~test] >= 5).all(), "train/val pairs must use FSDD takes 5-49 only"
    # Test images are MNIST *test* images: each stored image is the reconstruction of x_test[mnist_index],
    # so it is far closer to that image than to the x_train image at the same index.
    rows = frame[test].head(30)
    stored = np.stack([decode_png(b) for b in rows["image"]]).astype(float)
    own = mnist["x_test"][rows["mnist_index"]].astype(float)
    other = mnist["x_train"][rows["mnist_index"]].astype(float)
    assert np.abs(stored - own).mean() < np.abs(stored - other).mean()
    # Train and val draw from different MNIST images.
    train_idx = set(frame.loc[frame["split"] == "train", "mnist_index"])
    assert not train_idx & set(frame.loc[frame["split"] == "val", "mnist_index"])


def test_avmnist_noise_is_disjoint_between_test_and_training(av):
    _, frame = av
    test = set(frame.loc[frame["split"] == "test", "noise_file"])
    train = set(frame.loc[frame["split"] != "test", "noise_file"])
    assert test and train and not test & train
    # Not even the same source recording (ESC-50 names are fold-src_file-take-target.flac).
    src = lambda files: {Path(f).name.split("-")[1] for f in files}  # noqa: E731
    assert not src(test) & src(train)
    assert all(Path(f).name.startswith("4-") for f in test | train), "noise comes from ESC-50 fold 4"


def test_avmnist_images_keep_about_a_quarter_of_the_energy(av, mnist):
    _, frame = av
    rows = frame[frame["split"] == "train"]
    stored = np.stack([decode_png(b) for b in rows["image"]]).reshape(len(rows), -1).astype(float)
    original = mnist["x_train"][rows["mnist_index"]].reshape(len(rows), -1).astype(float)
    mean = original.mean(axis=0)
    energy = ((stored - mean) ** 2).sum() / ((original - mean) ** 2).sum()
    assert 0.2 < energy < 0.35, energy
    # The stored images live (up to rounding and clipping) in a 4-dimensional subspace.
    singular = np.linalg.svd(stored - stored.mean(axis=0), compute_uv=False)
    assert (singular[:4] ** 2).sum() / (singular**2).sum() > 0.97
    assert decode_png(rows["image"].iloc[0]).shape == (28, 28)


def test_avmnist_audio_is_8khz_wav_at_the_requested_snr(av):
    _, frame = av
    measured = []
    for _, row in frame.head(40).iterrows():
        info = sf.info(io.BytesIO(row["audio"]))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (8000, 1, "PCM_16", "WAV")
        mix, _ = sf.read(io.BytesIO(row["audio"]), dtype="float64")
        speech, sr = sf.read(REAL / row["fsdd_file"], dtype="float64")
        assert sr == 8000 and len(mix) == len(speech)
        if np.abs(mix).max() < 0.98:  # not rescaled against clipping, so mix - speech is the noise
            measured.append(10 * np.log10(np.mean(speech**2) / np.mean((mix - speech) ** 2)))
    assert len(measured) >= 5
    assert np.allclose(measured, frame["snr_db"].iloc[0], atol=0.2)


def test_avmnist_is_deterministic(av, tmp_path):
    prepared, frame = av
    again = prepare("avmnist", data_home=REAL, download=False, cache_dir=tmp_path / "a", progress=False, **SMALL_AV)
    assert again.table_path != prepared.table_path
    pd.testing.assert_frame_equal(pd.read_parquet(again.table_path), frame)
    other = prepare(
        "avmnist", data_home=REAL, download=False, cache_dir=tmp_path / "b", progress=False, seed=1, **SMALL_AV
    )
    assert not pd.read_parquet(other.table_path)["mnist_index"].equals(frame["mnist_index"])


def test_avmnist_rows_load_through_the_preprocessors(av):
    from tessera.preprocess import LoadContext, create_preprocessor

    prepared, frame = av
    inputs = prepared.schema["inputs"]
    audio = create_preprocessor("audio", ["audio"], **inputs["audio"]["options"])
    sample = audio.load([frame["audio"].iloc[0]], LoadContext())
    assert sample.data.shape == (112, 112)
    assert 0 < sample.mask.sum() <= 112
    image = create_preprocessor("image", ["image"], **inputs["image"]["options"])
    assert image.load([frame["image"].iloc[0]], LoadContext()).data.shape == (1, 28, 28)


# -- the other recipes -------------------------------------------------------------------------------------
def test_fsdd_table(tmp_path):
    from tessera.datasets.fsdd import DIGIT_WORDS

    need("fsdd", "metadata.csv")
    prepared = prepare("fsdd", data_home=REAL, download=False, cache_dir=tmp_path, progress=False)
    frame = pd.read_parquet(prepared.table_path)
    assert prepared.rows == {"train": 2400, "val": 300, "test": 300}
    assert list(frame.columns) == ["audio", "digit", "transcript", "speaker", "take", "split"]
    assert frame["transcript"].head(20).tolist() == [DIGIT_WORDS[d] for d in frame["digit"].head(20)]
    assert (frame.loc[frame["split"] == "test", "take"] < 5).all()
    assert frame.loc[frame["split"] == "val", "take"].between(5, 9).all()
    assert (frame.loc[frame["split"] == "train", "take"] >= 10).all()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["audio"].head(20))
    assert frame.groupby("split")["digit"].nunique().eq(10).all()
    check_schema(prepared, frame)


def test_esc50_table(tmp_path):
    need("esc50_subset", "meta.csv")
    prepared = prepare("esc50", data_home=REAL, download=False, cache_dir=tmp_path, progress=False)
    frame = pd.read_parquet(prepared.table_path)
    assert len(frame) == 414 and sum(prepared.rows.values()) == 414
    assert set(prepared.rows) == {"train", "val", "test"}
    assert list(frame.columns) == ["audio", "category", "class_id", "fold", "src_file", "take", "split"]
    assert frame["category"].nunique() == 50
    assert frame.loc[frame["split"] == "train", "category"].nunique() == 50, "every class must be learnable"
    assert frame.groupby("src_file")["split"].nunique().eq(1).all(), "a source recording must not straddle splits"
    assert 0.15 < prepared.rows["test"] / len(frame) < 0.3
    check_schema(prepared, frame)
    by_fold = prepare("esc50", data_home=REAL, download=False, cache_dir=tmp_path, progress=False, split_by="fold")
    assert by_fold.rows["test"] == 400 and by_fold.table_path != prepared.table_path


def test_flickr8k_table(tmp_path):
    need("flickr8k_1k", "captions.csv")
    prepared = prepare("flickr8k", data_home=REAL, download=False, cache_dir=tmp_path, progress=False)
    frame = pd.read_parquet(prepared.table_path)
    assert list(frame.columns) == ["image", "caption", "image_id", "split"]
    assert prepared.rows == {"train": 4000, "test": 1000}
    images = frame.groupby("split")["image_id"].nunique()
    assert images["train"] == 800 and images["test"] == 200
    assert frame.groupby("image_id")["split"].nunique().eq(1).all(), "split by image, not by caption"
    assert frame.groupby("image_id").size().eq(5).all()
    assert prepared.schema["target"] is None and prepared.schema["task"] is None
    assert Path(frame["image"].iloc[0]).is_file()
    check_schema(prepared, frame)


def test_fashion_mnist_table(tmp_path):
    need("fashion_mnist", "fashion_mnist.npz")
    prepared = prepare(
        "fashion_mnist", data_home=REAL, download=False, cache_dir=tmp_path, progress=False, n_train=400, n_test=200
    )
    frame = pd.read_parquet(prepared.table_path)
    assert prepared.rows == {"train": 400, "val": 5000, "test": 200}
    assert list(frame.columns) == ["image", "label", "split", "source_index"]
    assert set(frame["label"]) <= set(CLASSES) and frame["label"].nunique() == 10
    with np.load(REAL / "fashion_mnist" / "fashion_mnist.npz") as npz:
        x_train, y_train, x_test = npz["x_train"], npz["y_train"], npz["x_test"]
    row = frame[frame["split"] == "test"].iloc[0]
    assert np.array_equal(decode_png(row["image"]), x_test[row["source_index"]]), "PNG must be lossless"
    train = frame[frame["split"] != "test"]
    assert (train["label"] == [CLASSES[int(y_train[i])] for i in train["source_index"]]).all()
    assert not set(train.loc[train["split"] == "train", "source_index"]) & set(
        train.loc[train["split"] == "val", "source_index"]
    )
    check_schema(prepared, frame)
