"""Models for the server tests, built once per session: a tiny fused predictor, a tiny image+text embedder, an index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_SCHEMA, serve_in_thread, write_tiny_table


@dataclass
class Built:
    table: Path
    model: Path
    embedder: Path
    index: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    from tessera.align import Embedder, fit_alignment
    from tessera.index.build import index_table
    from tessera.pipeline import Pipeline, cache_split
    from tessera.predictor import Predictor
    from tessera.schema import Schema
    from tessera.table import read_table

    root = tmp_path_factory.mktemp("serve")
    table = write_tiny_table(root / "tiny")
    predictor = Predictor(model={"dim": 16}, train={"epochs": 1, "batch_size": 16, "seed": 0}).fit(table, schema=dict(TINY_SCHEMA), skip_report=root / "skipped.csv")
    predictor.save(root / "model")
    schema = Schema.from_dict({"inputs": {k: TINY_SCHEMA["inputs"][k] for k in ("image", "caption")}})
    t = read_table(table)
    pipeline = Pipeline.fit(t.frame, schema)
    torch.manual_seed(0)
    embedder = Embedder.create(pipeline, dim=16, encoder_dim=32)
    fit_alignment(embedder.model, cache_split(pipeline, pipeline.dataset(t, with_target=False)), epochs=4, batch_size=16, lr=3e-3, seed=0, device="cpu")
    embedder.model.eval()
    embedder.save(root / "embedder")
    index_table(embedder, table, root / "index", "image", embedder_path=root / "embedder")
    return Built(table, root / "model", root / "embedder", root / "index")


@pytest.fixture
def keys_file(tmp_path) -> tuple[Path, str]:
    from tessera.serve.auth import KeyStore

    path = tmp_path / "keys.json"
    _, key = KeyStore(path).add("tests")
    return path, key


@pytest.fixture(scope="session")
def loaded(built) -> dict:
    """The models loaded once; each test's app wraps them (one app runs at a time, so they are never shared by two batchers at once)."""
    from tessera.serve import load_models

    return load_models(built.model, built.index, None)


@pytest.fixture
def make_client(loaded, keys_file, tmp_path):
    """make_client(**config) -> (TestClient, auth headers); the app is closed when the test ends."""
    from fastapi.testclient import TestClient

    from tessera.serve import ServeConfig, create_app

    clients = []

    def make(**overrides):
        config = ServeConfig(keys_file=keys_file[0], feedback_db=str(tmp_path / "feedback.db"), **overrides)
        app = create_app(config, **loaded)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client, {"Authorization": f"Bearer {keys_file[1]}"}

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def live_server(loaded, keys_file, tmp_path):
    """A real uvicorn server on 127.0.0.1 (in a thread), with the protocol `tessera serve` runs: (url, key, feedback database)."""
    from tessera.serve import ServeConfig, create_app

    db = tmp_path / "feedback.db"
    app = create_app(ServeConfig(keys_file=keys_file[0], feedback_db=str(db)), **loaded)
    with serve_in_thread(app, guarded=True) as url:
        yield url, keys_file[1], db


@pytest.fixture(scope="session")
def generators(built, tmp_path_factory) -> dict:
    """Generators saved to folders and loaded as `tessera serve --generator ...` loads them.

    A captioner that learnt one caption per color (``tiny-captioner``: image -> text), the
    tiny LM alone (``tiny-lm``: text -> text), and untrained diffusion models over the
    served embedder's 16-d text vectors: ``tiny-images`` (16x16 grayscale) and ``tiny-voice``
    (FSDD-shaped log-mel spectrograms, two speakers). Untrained, they draw noise: enough for
    the API (sizes, formats, seeds), which is what these tests check.
    """
    from tessera.generate.diffusion import Denoiser, DiffusionGenerator, ModelSettings, TextConditioner
    from tessera.serve.state import load_models
    from tests.generate.conftest import build_tiny_lm, fit_captioner, write_images

    root = tmp_path_factory.mktemp("generators")
    lm = build_tiny_lm(root / "tiny-lm")
    frame = write_images(root / "photos")
    fit_captioner(lm, frame, root / "photos").save(root / "tiny-captioner")
    text = TextConditioner(str(built.embedder))
    torch.manual_seed(0)
    pictures = ModelSettings(block_out_channels=(16, 32), attention_levels=(1,), context_dim=32, patch=2)
    DiffusionGenerator(net=Denoiser(pictures, 1, 16, text.dim), model=pictures, text=text, shape=(1, 16, 16),
                       meta={"task": "text2image"}).save(root / "tiny-images")
    spectrograms = ModelSettings(block_out_channels=(16, 32), attention_levels=(1,), context_dim=32, patch=4)
    DiffusionGenerator(net=Denoiser(spectrograms, 1, 64, text.dim + 2), model=spectrograms, text=text, shape=(1, 64, 64),
                       label_names=["ann", "bob"], meta={"task": "text2speech", "sample_rate": 8000}).save(root / "tiny-voice")
    loaded = load_models(None, None, None, generators=[str(root / "tiny-captioner"), str(lm)],
                         image_generators=[root / "tiny-images"], speech_generators=[root / "tiny-voice"])
    return loaded["generators"]
