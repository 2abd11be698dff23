"""Fetching raw sources, against a local HTTP server that serves tiny archives in the public formats."""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from tessera.datasets import download, prepare, require, sources
from tessera.errors import TesseraError


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1; yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "URLS", dict(sources.URLS))
    monkeypatch.setattr(sources, "SHA256", dict(sources.SHA256))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- tiny archives in the original formats ---------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic 0x0000 0x08 ndim, big-endian dims, then the bytes (what LeCun's files contain)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_idx_set(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.permutation(np.arange(n_test) % 10),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def wav(seconds: float, rate: int, freq: float, silent_head: float = 0.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    x[: int(silent_head * rate)] = 0
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def fake_fsdd_zip(path: Path, takes: int = 8) -> None:
    """Like the GitHub release: free-spoken-digit-dataset-1.0.10/recordings/<digit>_<speaker>_<take>.wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("free-spoken-digit-dataset-1.0.10/README.md", "FSDD")
        for digit in range(10):
            for take in range(takes):
                name = f"free-spoken-digit-dataset-1.0.10/recordings/{digit}_alice_{take}.wav"
                zf.writestr(name, wav(0.2 + 0.01 * take, 8000, 200 + 50 * digit))


def fake_esc50_zip(path: Path) -> None:
    """Like the repository zip: ESC-50-master/meta/esc50.csv + ESC-50-master/audio/*.wav at 44.1 kHz."""
    rows = []
    for category, target in (("dog", 0), ("rain", 10)):
        for src in range(4):
            for take in "AB" if src == 0 else "A":
                rows.append([f"4-{100 + 10 * target + src}-{take}-{target}.wav", 4, target, category, False,
                             str(100 + 10 * target + src), take])
    rows.append(["1-999-A-0.wav", 1, 0, "dog", False, "999", "A"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
        zf.writestr("ESC-50-master/meta/esc50.csv", buf.getvalue())
        for i, row in enumerate(rows):
            zf.writestr(f"ESC-50-master/audio/{row[0]}", wav(1.0, 44100, 300 + 40 * i, silent_head=0.3))


def fake_flickr_zips(folder: Path, n_images: int = 4) -> list[str]:
    names = [f"{1000 + i}_abc.jpg" for i in range(n_images)]
    with zipfile.ZipFile(folder / "Flickr8k_text.zip", "w") as zf:
        lines = [f"{name}#{k}\tcaption {k} of {name} ." for name in names for k in range(5)]
        lines.append("9999_missing.jpg#0\ta caption without a photo .")
        zf.writestr("Flickr8k.token.txt", "\n".join(lines))
    with zipfile.ZipFile(folder / "Flickr8k_Dataset.zip", "w") as zf:
        for name in names:
            buf = io.BytesIO()
            Image.new("RGB", (500, 375), (120, 30, 200)).save(buf, format="JPEG")
            zf.writestr(f"Flicker8k_Dataset/{name}", buf.getvalue())
    return names


# -- download() --------------------------------------------------------------------------------------------
def test_download_streams_and_verifies(server, tmp_path):
    root, base = server
    (root / "blob.bin").write_bytes(b"x" * 3_000_000)
    dest = tmp_path / "out" / "blob.bin"
    assert download(f"{base}/blob.bin", dest, sha256=sha(root / "blob.bin"), progress=False) == dest
    assert dest.read_bytes() == b"x" * 3_000_000
    assert not dest.with_name("blob.bin.tmp").exists()
    # The progress bar path (rich) writes the same bytes.
    shown = download(f"{base}/blob.bin", tmp_path / "out" / "shown.bin", progress=True)
    assert shown.read_bytes() == dest.read_bytes()
    # A present file with the right checksum is not fetched again.
    (root / "blob.bin").unlink()
    assert download(f"{base}/blob.bin", dest, sha256=sha(dest), progress=False) == dest


def test_download_404_names_url_and_manual_path(server, tmp_path):
    _, base = server
    dest = tmp_path / "out" / "missing.zip"
    with pytest.raises(TesseraError) as err:
        download(f"{base}/missing.zip", dest, progress=False)
    assert f"{base}/missing.zip" in str(err.value) and "404" in str(err.value)
    assert str(dest) in str(err.value) and "place it" in str(err.value)
    assert not dest.exists() and not dest.with_name("missing.zip.tmp").exists()


def test_download_unreachable_host(tmp_path):
    with pytest.raises(TesseraError, match=r"could not fetch http://127\.0\.0\.1:9/x\.zip"):
        download("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", progress=False)


def test_download_checksum_mismatch(server, tmp_path):
    root, base = server
    (root / "a.gz").write_bytes(b"not what was published")
    dest = tmp_path / "a.gz"
    with pytest.raises(TesseraError, match="checksum mismatch.*expected sha256 0000"):
        download(f"{base}/a.gz", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("a.gz.tmp").exists()


def test_mnist_checksum_mismatch_through_require(server, tmp_path):
    root, base = server
    fake_idx_set(root / "mnist")
    sources.URLS["mnist"] = f"{base}/mnist/"  # the published checksums stay: the fake files cannot match them
    with pytest.raises(TesseraError, match="checksum mismatch for .*train-images-idx3-ubyte.gz.*mnist/mnist.npz"):
        require("mnist", tmp_path / "home", progress=False)
    assert not (tmp_path / "home" / "mnist" / "mnist.npz").exists()


# -- missing files -----------------------------------------------------------------------------------------
def test_missing_raw_files_without_download_name_them(tmp_path):
    home = tmp_path / "empty"
    with pytest.raises(TesseraError) as err:
        prepare("fsdd", data_home=home, download=False, progress=False)
    message = str(err.value)
    assert str(home / "fsdd" / "metadata.csv") in message and str(home / "fsdd" / "recordings") in message
    assert "download=True" in message and "fsdd/recordings/*.wav" in message
    with pytest.raises(TesseraError, match=r"avmnist|mnist/mnist\.npz"):
        prepare("avmnist", data_home=home, download=False, progress=False)


def test_download_failure_for_a_source_says_where_to_put_files(server, tmp_path):
    _, base = server
    sources.URLS["fsdd"] = f"{base}/nothing-here.zip"
    with pytest.raises(TesseraError) as err:
        require("fsdd", tmp_path / "home", progress=False)
    assert f"{base}/nothing-here.zip" in str(err.value) and "fsdd/metadata.csv" in str(err.value)


# -- whole sources, converted into the data-home layout -----------------------------------------------------
def test_fetch_idx_sets_into_npz(server, tmp_path):
    root, base = server
    arrays = fake_idx_set(root / "mnist")
    fake_idx_set(root / "fashion", n_train=30, n_test=10, seed=1)
    sources.URLS["mnist"] = f"{base}/mnist/"
    sources.URLS["fashion_mnist"] = f"{base}/fashion/"
    for name in sources.IDX_FILES:
        sources.SHA256[f"mnist/{name}"] = sha(root / "mnist" / name)
        sources.SHA256[f"fashion_mnist/{name}"] = None
    home = tmp_path / "home"
    require("mnist", home, progress=False)
    with np.load(home / "mnist" / "mnist.npz") as npz:
        order = np.argsort(arrays["train-labels-idx1-ubyte.gz"], kind="stable")
        assert np.array_equal(npz["y_train"], arrays["train-labels-idx1-ubyte.gz"][order])
        assert np.array_equal(npz["x_train"], arrays["train-images-idx3-ubyte.gz"][order])
        assert npz["x_test"].shape == (20, 28, 28) and (np.diff(npz["y_test"]) >= 0).all()
    assert not (home / "mnist" / "downloads").exists(), "archives are removed once converted"
    prepared = prepare("fashion_mnist", data_home=home, progress=False, n_val=5)
    assert prepared.rows == {"train": 25, "val": 5, "test": 10}


def test_fetch_flickr8k_subset(server, tmp_path, monkeypatch):
    root, base = server
    names = fake_flickr_zips(root, n_images=4)
    sources.URLS["flickr8k_text"] = f"{base}/Flickr8k_text.zip"
    sources.URLS["flickr8k_images"] = f"{base}/Flickr8k_Dataset.zip"
    monkeypatch.setattr(sources, "FLICKR_SUBSET", 3)
    home = tmp_path / "home"
    require("flickr8k", home, progress=False)
    captions = pd.read_csv(home / "flickr8k_1k" / "captions.csv")
    assert captions["image"].unique().tolist() == [f"images/{n}" for n in names[:3]]
    assert len(captions) == 15
    with Image.open(home / "flickr8k_1k" / "images" / names[0]) as img:
        assert img.size == (200, 150)


def test_avmnist_end_to_end_from_downloads(server, tmp_path):
    root, base = server
    fake_idx_set(root / "mnist")
    fake_fsdd_zip(root / "fsdd.zip")
    fake_esc50_zip(root / "esc50.zip")
    sources.URLS.update(mnist=f"{base}/mnist/", fsdd=f"{base}/fsdd.zip", esc50=f"{base}/esc50.zip")
    for name in sources.IDX_FILES:
        sources.SHA256[f"mnist/{name}"] = sha(root / "mnist" / name)
    home = tmp_path / "home"
    prepared = prepare("avmnist", data_home=home, progress=False, n_train=30, n_val=10, n_test=20)
    assert prepared.rows == {"train": 30, "val": 10, "test": 20}

    meta = pd.read_csv(home / "fsdd" / "metadata.csv")
    assert len(meta) == 80 and set(meta.columns) == {"file", "digit", "speaker", "take", "split"}
    assert (meta.loc[meta["take"] < 5, "split"] == "test").all()
    esc = pd.read_csv(home / "esc50_subset" / "meta.csv")
    assert esc["filename"].str.match(r"audio/.*\.flac$").all() and len(esc) == 11
    info = sf.info(home / "esc50_subset" / esc["filename"][0])
    assert (info.samplerate, info.format) == (16000, "FLAC")

    frame = pd.read_parquet(prepared.table_path)
    digit = frame["fsdd_file"].map(lambda f: int(Path(f).name[0]))
    assert (digit == frame["label"]).all()
    assert not set(frame.loc[frame["split"] == "test", "noise_file"]) & set(
        frame.loc[frame["split"] != "test", "noise_file"]
    )
    assert frame["noise_file"].str.contains("/4-").all(), "noise only from fold 4"
    # A second prepare finds everything in place and does not download again.
    root.joinpath("fsdd.zip").unlink()
    assert prepare("avmnist", data_home=home, progress=False, n_train=30, n_val=10, n_test=20,
                   force=True).rows == prepared.rows
