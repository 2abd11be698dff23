"""AV-MNIST: an MNIST digit image paired with a noisy spoken recording of the same digit.

The benchmark of CentralNet (Vielzeuf et al., 2018) and MultiBench (Liang et al., 2021)
is built so that neither modality is enough on its own: the images keep only the
principal components that hold ~25 % of the pixel variance, and the spoken digits are
buried in environmental noise from ESC-50. Numbers only compare with those papers if
the construction matches, so each step below follows the generator MultiBench's data
came from (``datasets/avmnist_gen.py`` in github.com/slyviacassell/_MFAS, the fork of
Pérez-Rúa et al.'s MFAS code that MultiBench's ``datasets/avmnist/README.md`` points
to) where the paper leaves a choice open, and the card says where it deviates.

Sizes and pairing: 55,000 train / 5,000 val pairs from MNIST training images and FSDD
training takes (5-49), 10,000 test pairs from MNIST test images and FSDD test takes
(0-4) only. Each image gets a recording of its digit drawn without replacement from a
seeded shuffle of that digit's pool (the pool is reshuffled when used up), so all
recordings are used about equally often.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tessera.datasets import esc50, fsdd
from tessera.datasets.build import Built, png_bytes, track, wav_bytes
from tessera.errors import SchemaError, TesseraError
from tessera.tasks import Multiclass

VERSION = 1
SOURCES = ("mnist", "fsdd", "esc50")

SAMPLE_RATE = fsdd.SAMPLE_RATE  # 8 kHz, FSDD's native rate; noise is resampled to it
AUDIO_OPTIONS = dict(fsdd.AUDIO_OPTIONS)  # 112 mel bands x 112 frames, the CentralNet spectrogram size

# Calibration (see the card): the audio_cnn baseline of benchmarks/avmnist.py (width 8,
# 10,000 training pairs, 3 epochs) scores 34.7 % at -10 dB, 37.3 % at -9, 42.5 % at -7
# and 45.5 % at -6 on the test pairs, so -7 dB lands on MultiBench's ~42 % audio-only figure.
DEFAULT_SNR_DB = -7.0
NOISE_FOLD = 4  # the ESC-50 fold every data home has (the shared subset is fold 4 plus a few clips)
TEST_NOISE_FRACTION = 0.25
SILENCE_DB = -40.0  # 20 ms frames this far below a clip's loudest frame count as silence
FRAME = SAMPLE_RATE // 50


def build(
    home: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    n_train: int = 55_000,
    n_val: int = 5_000,
    n_test: int = 10_000,
    snr_db: float = DEFAULT_SNR_DB,
    pca_energy: float = 0.25,
    seed: int = 0,
) -> Built:
    if not 0 < pca_energy < 1:
        raise SchemaError(f"avmnist pca_energy must be in (0, 1), got {pca_energy}")
    rng = np.random.default_rng(seed)

    # -- images: MNIST with ~75 % of the variance removed ------------------------------------------
    with np.load(home / "mnist" / "mnist.npz") as npz:
        x_train, y_train, x_test, y_test = (npz[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    if n_train < 1 or n_val < 0 or n_test < 1 or n_train + n_val > len(x_train) or n_test > len(x_test):
        raise SchemaError(
            f"avmnist needs 1 <= n_train, 0 <= n_val, n_train + n_val <= {len(x_train)} and 1 <= n_test <= "
            f"{len(x_test)} (the MNIST split sizes); got n_train={n_train}, n_val={n_val}, n_test={n_test}"
        )
    perm = rng.permutation(len(x_train))
    index = {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": rng.permutation(len(x_test))[:n_test],
    }
    source_x = {"train": x_train, "val": x_train, "test": x_test}
    source_y = {"train": y_train, "val": y_train, "test": y_test}
    mean, components, ratio = fit_pca(x_train[index["train"]])
    k = n_components(ratio, pca_energy)
    basis = components[:k]

    # -- audio: FSDD recordings and ESC-50 noise, both at 8 kHz ---------------------------------------
    meta = fsdd.load_metadata(home)
    waves = [_read_mono(p, SAMPLE_RATE) for p in track(meta["path"], "reading FSDD", progress, total=len(meta))]
    training_takes, test_takes = meta.index[meta["take"] >= 5], meta.index[meta["take"] < 5]
    pools = {"train": training_takes, "val": training_takes, "test": test_takes}
    noise_meta, noise = load_noise(home, seed, progress, min_length=max(map(len, waves)))
    noise_pools = {s: np.flatnonzero(noise_meta["split"].values == ("test" if s == "test" else "train")) for s in index}

    frames = []
    for split, idx in index.items():
        labels = source_y[split][idx].astype(np.int64)
        images = reconstruct(source_x[split][idx], mean, basis)
        recs = assign_recordings(labels, meta.loc[pools[split], "digit"], rng)
        clips = noise_pools[split][rng.integers(0, len(noise_pools[split]), len(idx))]
        offsets = rng.random(len(idx))
        audio = []
        for rec, clip, u in track(zip(recs, clips, offsets), f"mixing avmnist {split}", progress, total=len(idx)):
            audio.append(wav_bytes(mix(waves[rec], noise[clip], u, snr_db), SAMPLE_RATE))
        frames.append(pd.DataFrame({
            "image": [png_bytes(im) for im in images],
            "audio": audio,
            "label": labels,
            "split": split,
            "mnist_index": idx.astype(np.int64),
            "fsdd_file": ["fsdd/" + f for f in meta.loc[recs, "file"]],
            "noise_file": ["esc50_subset/" + f for f in noise_meta["filename"].values[clips]],
            "snr_db": float(snr_db),
            "speaker": meta.loc[recs, "speaker"].astype(str).values,
        }))
    frame = pd.concat(frames, ignore_index=True)

    sizes = {"n_train": f"{n_train:,}", "n_val": f"{n_val:,}", "n_test": f"{n_test:,}"}
    return Built(frame, table_schema(), card_facts(sizes, seed, snr_db, pca_energy, k, ratio, noise_meta))


def table_schema() -> dict:
    """The schema of the built table: the image and the audio, the other columns kept as metadata."""
    return {
        "target": "label",
        "task": Multiclass.name,
        "split": "split",
        "inputs": {
            "image": {"modality": "image", "options": {"size": 28, "channels": 1}},
            "audio": {"modality": "audio", "column": "audio", "options": dict(AUDIO_OPTIONS)},
        },
        "ignore": ["mnist_index", "fsdd_file", "noise_file", "snr_db", "speaker"],
    }


def card_facts(
    sizes: dict, seed: int, snr_db: float, pca_energy: float, k: int, ratio: np.ndarray, noise_meta: pd.DataFrame
) -> dict:
    """The figures the dataset card quotes."""
    n_noise = noise_meta["split"].value_counts()
    return {
        **sizes,
        "seed": seed, "snr_db": f"{snr_db:g}",
        "pca_energy": f"{pca_energy:g}", "k": k, "kept": f"{100 * ratio[:k].sum():.1f}",
        "prev": f"{100 * ratio[: k - 1].sum():.1f}",
        "n_noise_train": int(n_noise.get("train", 0)), "n_noise_test": int(n_noise.get("test", 0)),
        "n_noise_silent": int(noise_meta.attrs.get("silent", 0)),
        "test_noise_pct": f"{100 * TEST_NOISE_FRACTION:g}",
    }


# -- images ----------------------------------------------------------------------------------------------
def fit_pca(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, components (rows, by decreasing variance) and each one's share of the variance."""
    x = images.reshape(len(images), -1).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    if len(x) < x.shape[1]:  # few images (quick builds): the thin SVD is the cheaper route
        _, singular, components = np.linalg.svd(xc, full_matrices=False)
        values = singular**2
    else:  # eigh of the 784x784 covariance costs the same for 60,000 images as for 1,000
        values, vectors = np.linalg.eigh(xc.T @ xc)
        order = np.argsort(values)[::-1]
        values, components = np.clip(values[order], 0.0, None), vectors[:, order].T
    return mean, components, values / values.sum()


def n_components(ratio: np.ndarray, energy: float) -> int:
    """The fewest leading components whose shares add up to at least ``energy``.

    On MNIST that is 4 components (28.4 % of the variance) for 0.25. MFAS's code uses
    ``argmax(cumsum(ratio) > energy)``, one fewer (3 components, 23.0 %), which leaves
    markedly less in the images (a kNN on the kept components: 53 % test accuracy
    with 3, 66 % with 4); ``pca_energy=0.2`` reproduces that choice.
    """
    return int(np.searchsorted(np.cumsum(ratio), energy - 1e-12) + 1)


def reconstruct(images: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Project onto ``basis`` and back, adding the mean (MFAS stores the centred projection; the
    mean is the same for every image, so it carries no label information), clipped to uint8."""
    x = images.reshape(len(images), -1).astype(np.float64) - mean
    rec = (x @ basis.T) @ basis + mean
    return np.clip(np.rint(rec), 0, 255).astype(np.uint8).reshape(images.shape)


# -- audio -----------------------------------------------------------------------------------------------
def _read_mono(path: str | Path, rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    return soxr.resample(wave, sr, rate).astype(np.float32) if sr != rate else wave


def load_noise(home: Path, seed: int, progress: bool, min_length: int) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """ESC-50 fold-4 clips at 8 kHz with silence removed, split into train and test noise.

    Many ESC-50 clips are a short event padded with digital silence; mixing at a fixed
    SNR against a silent stretch would blow the noise floor up or divide by zero. So the
    20 ms frames more than 40 dB below the clip's loudest frame are dropped and the
    rest is looped to at least the longest recording. Test noise is a disjoint set of
    whole source recordings per category (:func:`esc50.source_split`), so no test clip
    shares noise, or the recording it was cut from, with training.
    """
    meta = esc50.load_meta(home)
    meta = meta[meta["fold"] == NOISE_FOLD].sort_values("filename").reset_index(drop=True)
    if meta.empty:
        raise TesseraError(
            f"AV-MNIST needs the ESC-50 fold {NOISE_FOLD} clips; none are listed in {home / 'esc50_subset'}"
        )
    meta["split"] = esc50.source_split(meta, {"test": TEST_NOISE_FRACTION}, seed).values
    clips, keep = [], []
    for i, path in enumerate(track(meta["path"], "reading ESC-50 noise", progress, total=len(meta))):
        active = drop_silence(_read_mono(path, SAMPLE_RATE))
        if active.size:
            clips.append(np.tile(active, -(-min_length // active.size)))
            keep.append(i)
    silent = len(meta) - len(keep)
    meta = meta.iloc[keep].reset_index(drop=True)
    meta.attrs["silent"] = silent
    for split in ("train", "test"):
        if not (meta["split"] == split).any():
            raise TesseraError(f"no usable ESC-50 {split} noise clips in {home / 'esc50_subset'}")
    return meta, clips


def drop_silence(wave: np.ndarray) -> np.ndarray:
    frames = wave[: len(wave) // FRAME * FRAME].reshape(-1, FRAME)
    if frames.size == 0:
        return frames.ravel()
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    if rms.max() <= 0:
        return frames[:0].ravel()
    return frames[rms > rms.max() * 10 ** (SILENCE_DB / 20)].ravel()


def assign_recordings(labels: np.ndarray, pool_digits: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """For each label, a recording (row of the FSDD metadata) of that digit, cycling through seeded shuffles."""
    out = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        pool = pool_digits.index[pool_digits.values == digit].to_numpy()
        if len(where) and not len(pool):
            raise TesseraError(f"FSDD has no recording of digit {digit} for this split")
        if len(where):
            reps = -(-len(where) // len(pool))
            out[where] = np.concatenate([rng.permutation(pool) for _ in range(reps)])[: len(where)]
    return out


def mix(speech: np.ndarray, noise: np.ndarray, position: float, snr_db: float) -> np.ndarray:
    """Add the noise stretch starting at ``position`` (0-1 of the usable range) at ``snr_db``.

    SNR is the ratio of mean powers over the recording's length. The mixture is scaled
    down only if it would clip, which keeps the SNR exact.
    """
    n = len(speech)
    start = int(position * (len(noise) - n + 1))
    segment = noise[start : start + n]
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    p_noise = float(np.mean(segment.astype(np.float64) ** 2))
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10))) if p_noise > 0 else 0.0
    out = speech + gain * segment
    peak = float(np.abs(out).max()) if n else 0.0
    return out * (0.99 / peak) if peak > 0.99 else out
