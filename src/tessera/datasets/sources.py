"""The raw sources in the data home: which files each one needs, and how to fetch them.

Recipes read a fixed, simple layout (one ``.npz`` per image set, a folder of audio or
image files plus one CSV) so that the same code runs on a shared read-only copy, on
files a user placed by hand, and on files fetched here. Fetching therefore converts the
public archives into that layout:

* ``mnist/mnist.npz``, ``fashion_mnist/fashion_mnist.npz``: the four IDX ``.gz`` files
  as ``x_train, y_train, x_test, y_test`` uint8 arrays, each split stably sorted by class
  (the order the shared copy uses, so indices mean the same thing everywhere).
* ``fsdd/recordings/*.wav`` + ``fsdd/metadata.csv``: from the FSDD GitHub release zip.
* ``esc50_subset/audio/*.flac`` + ``esc50_subset/meta.csv``: every ESC-50 clip from the
  GitHub master zip, resampled to 16 kHz mono FLAC. (The shared copy holds only fold 4
  plus 14 clips; recipes use rules that give the same result on both.)
* ``flickr8k_1k/images/*.jpg`` + ``flickr8k_1k/captions.csv``: the first 1000 Flickr8k
  photos by file name, longer side downscaled to 200 px, with their 5 captions.

The file that marks a source complete (the CSV or the ``.npz``) is written last, so an
interrupted fetch is detected as missing and redone. URLs and checksums are module
dicts so tests (or a user with a mirror) can point them elsewhere.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tessera.datasets.build import track
from tessera.datasets.download import download
from tessera.errors import TesseraError

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

URLS: dict[str, str] = {
    # Base URLs for the IDX files (file names above are appended).
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    # Archives.
    "fsdd": "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip",
    "esc50": "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip",
    "flickr8k_images": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    "flickr8k_text": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
}

# Published SHA-256 sums (TensorFlow Datasets, torchvision and Zalando list the same ones).
# The GitHub archives have none: a branch zip changes with every commit, so those are
# checked by content (file counts, CSV columns) instead.
SHA256: dict[str, str | None] = {
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion_mnist/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion_mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion_mnist/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "fsdd": None,
    "esc50": None,
    "flickr8k_images": None,
    "flickr8k_text": None,
}

FLICKR_SUBSET = 1000
FLICKR_MAX_SIDE = 200
ESC50_RATE = 16000


@dataclass(frozen=True)
class Source:
    name: str
    required: tuple[str, ...]  # relative to the data home; a trailing "/" means a non-empty folder
    layout: str  # what to place by hand, for the error message
    fetch: Callable[[Path, bool], None]


def missing_files(source: Source, home: Path) -> list[Path]:
    missing = []
    for rel in source.required:
        path = home / rel
        if rel.endswith("/"):
            if not path.is_dir() or not any(path.iterdir()):
                missing.append(path)
        elif not path.is_file():
            missing.append(path)
    return missing


def require(name: str, home: Path, *, download: bool = True, progress: bool = True) -> Path:
    """Make sure source ``name`` is in ``home``, fetching it when allowed; return its folder."""
    source = SOURCES[name]
    missing = missing_files(source, home)
    if missing and not download:
        raise TesseraError(
            f"raw files for '{name}' are missing: {', '.join(str(p) for p in missing)}. "
            f"Place {source.layout} under {home} (or set TESSERA_DATA to a folder that has them), "
            "or pass download=True to fetch them."
        )
    if missing:
        try:
            source.fetch(home, progress)
        except PermissionError as e:
            raise TesseraError(
                f"cannot write '{name}' into the data home {home} ({e}); set TESSERA_DATA to a writable "
                f"folder or place {source.layout} there by hand"
            ) from None
        still = missing_files(source, home)
        if still:
            raise TesseraError(f"fetching '{name}' did not produce {', '.join(map(str, still))}")
    return home / source.required[0].split("/")[0]


def _hint(name: str, home: Path) -> str:
    return f"or place {SOURCES[name].layout} under {home} by hand"


# -- MNIST and Fashion-MNIST ------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the format LeCun's MNIST and Fashion-MNIST ship in)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise TesseraError(f"{path} is not an unsigned-byte IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise TesseraError(f"{path}: header says shape {shape} but holds {body.size} values (truncated file?)")
    return body.reshape(shape)


def _fetch_idx_set(name: str, out_name: str) -> Callable[[Path, bool], None]:
    def fetch(home: Path, progress: bool) -> None:
        folder = home / name
        downloads = folder / "downloads"
        paths = {}
        for file in IDX_FILES:
            sha256 = SHA256.get(f"{name}/{file}")
            paths[file] = download(URLS[name] + file, downloads / file, sha256, progress, manual_hint=_hint(name, home))
        arrays = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
            y = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"])
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise TesseraError(f"{name}: {prefix} images {x.shape} and labels {y.shape} do not match")
            order = np.argsort(y, kind="stable")
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x[order], y[order]
        tmp = folder / f".{out_name}.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, folder / out_name)
        shutil.rmtree(downloads, ignore_errors=True)

    return fetch


# -- FSDD ----------------------------------------------------------------------------------------------
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _fetch_fsdd(home: Path, progress: bool) -> None:
    folder = home / "fsdd"
    archive = download(URLS["fsdd"], home / "downloads" / "fsdd.zip", SHA256.get("fsdd"), progress,
                       manual_hint=_hint("fsdd", home))
    rows = []
    (folder / "recordings").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            match = FSDD_NAME.match(parts[-1])
            if info.is_dir() or "recordings" not in parts[:-1] or not match:
                continue
            _write_atomic(folder / "recordings" / parts[-1], zf.read(info))
            digit, speaker, take = match.groups()
            split = "test" if int(take) < 5 else "train"  # FSDD's official split
            rows.append([f"recordings/{parts[-1]}", int(digit), speaker, int(take), split])
    if not rows:
        raise TesseraError(f"{archive} holds no recordings/<digit>_<speaker>_<take>.wav files; is it the FSDD zip?")
    rows.sort(key=lambda r: r[0])
    _write_csv(folder / "metadata.csv", ["file", "digit", "speaker", "take", "split"], rows)
    archive.unlink(missing_ok=True)


# -- ESC-50 --------------------------------------------------------------------------------------------
def _fetch_esc50(home: Path, progress: bool) -> None:
    import soundfile as sf
    import soxr

    folder = home / "esc50_subset"
    archive = download(URLS["esc50"], home / "downloads" / "esc50.zip", SHA256.get("esc50"), progress,
                       manual_hint=_hint("esc50", home))
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        meta_member = next((n for n in zf.namelist() if n.endswith("meta/esc50.csv")), None)
        if meta_member is None:
            raise TesseraError(f"{archive} has no meta/esc50.csv; is it the ESC-50 repository zip?")
        meta = list(csv.DictReader(io.StringIO(zf.read(meta_member).decode("utf-8"))))
        rows = []
        for rec in track(meta, "converting ESC-50 to 16 kHz FLAC", progress):
            member = names.get(rec["filename"])
            if member is None:
                raise TesseraError(f"{archive}: esc50.csv lists {rec['filename']} but the archive lacks it")
            wave, sr = sf.read(io.BytesIO(zf.read(member)), dtype="float32", always_2d=True)
            wave = soxr.resample(wave.mean(axis=1), sr, ESC50_RATE) if sr != ESC50_RATE else wave.mean(axis=1)
            stem = Path(rec["filename"]).stem
            buf = io.BytesIO()
            sf.write(buf, np.clip(wave, -1.0, 1.0), ESC50_RATE, format="FLAC", subtype="PCM_16")
            _write_atomic(folder / "audio" / f"{stem}.flac", buf.getvalue())
            rows.append([f"audio/{stem}.flac", rec["fold"], rec["target"], rec["category"], rec["esc10"],
                         rec["src_file"], rec["take"]])
    _write_csv(folder / "meta.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    archive.unlink(missing_ok=True)


# -- Flickr8k ------------------------------------------------------------------------------------------
def _fetch_flickr8k(home: Path, progress: bool) -> None:
    from PIL import Image

    folder = home / "flickr8k_1k"
    text_zip = download(URLS["flickr8k_text"], home / "downloads" / "Flickr8k_text.zip", SHA256.get("flickr8k_text"),
                        progress, manual_hint=_hint("flickr8k", home))
    captions: dict[str, list[tuple[int, str]]] = {}
    with zipfile.ZipFile(text_zip) as zf:
        token = next((n for n in zf.namelist() if n.endswith("Flickr8k.token.txt") and "__MACOSX" not in n), None)
        if token is None:
            raise TesseraError(f"{text_zip} has no Flickr8k.token.txt; is it Flickr8k_text.zip?")
        for line in zf.read(token).decode("utf-8").splitlines():
            key, _, caption = line.partition("\t")
            image, _, k = key.partition("#")
            if image.endswith(".jpg") and caption.strip():
                captions.setdefault(image, []).append((int(k or 0), caption.strip()))
    image_zip = download(URLS["flickr8k_images"], home / "downloads" / "Flickr8k_Dataset.zip",
                         SHA256.get("flickr8k_images"), progress, manual_hint=_hint("flickr8k", home))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    with zipfile.ZipFile(image_zip) as zf:
        members = {Path(n).name: n for n in zf.namelist() if n.endswith(".jpg") and "__MACOSX" not in n}
        chosen = sorted(name for name in members if name in captions)[:FLICKR_SUBSET]
        if not chosen:
            raise TesseraError(f"{image_zip} has no .jpg files with captions; is it Flickr8k_Dataset.zip?")
        for name in track(chosen, "downscaling Flickr8k photos", progress):
            with Image.open(io.BytesIO(zf.read(members[name]))) as img:
                img = img.convert("RGB")
                scale = FLICKR_MAX_SIDE / max(img.size)
                if scale < 1:
                    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=90)
            _write_atomic(folder / "images" / name, buf.getvalue())
            rows.extend([f"images/{name}", c] for _, c in sorted(captions[name]))
    _write_csv(folder / "captions.csv", ["image", "caption"], rows)
    text_zip.unlink(missing_ok=True)
    image_zip.unlink(missing_ok=True)


# -- helpers -------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


SOURCES: dict[str, Source] = {
    "mnist": Source("mnist", ("mnist/mnist.npz",), "mnist/mnist.npz (x_train, y_train, x_test, y_test)",
                    _fetch_idx_set("mnist", "mnist.npz")),
    "fashion_mnist": Source("fashion_mnist", ("fashion_mnist/fashion_mnist.npz",),
                            "fashion_mnist/fashion_mnist.npz (x_train, y_train, x_test, y_test)",
                            _fetch_idx_set("fashion_mnist", "fashion_mnist.npz")),
    "fsdd": Source("fsdd", ("fsdd/metadata.csv", "fsdd/recordings/"),
                   "fsdd/recordings/*.wav and fsdd/metadata.csv (file, digit, speaker, take, split)", _fetch_fsdd),
    "esc50": Source("esc50", ("esc50_subset/meta.csv", "esc50_subset/audio/"),
                    "esc50_subset/audio/*.flac and esc50_subset/meta.csv (filename, fold, target, category, esc10, "
                    "src_file, take)", _fetch_esc50),
    "flickr8k": Source("flickr8k", ("flickr8k_1k/captions.csv", "flickr8k_1k/images/"),
                       "flickr8k_1k/images/*.jpg and flickr8k_1k/captions.csv (image, caption)", _fetch_flickr8k),
}
