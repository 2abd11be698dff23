"""The frozen-feature cache: features computed once per row on the data side, bit-identical to
running the encoder, invalidated when the tower or the preprocessing changes, usable after a crash
mid-fill, reused across fit runs; predictions on raw rows match those on cached features."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tessera.encoders import ENCODERS, Encoder, register_encoder
from tessera.errors import TesseraError
from tessera.features import FeatureStore, FrozenFeatures, feature_stage
from tessera.pipeline import Pipeline, cache_split
from tessera.predictor import Predictor
from tessera.prepare import DataSettings, prepare
from tessera.schema import Schema
from tessera.table import read_table
from tessera.train import run_inference
from tests.conftest import REPO, write_tiny_table

IMAGE_ONLY = {"target": "label", "inputs": {"image": {"modality": "image", "options": {"size": 16}, "encoder": "test_frozen_pixels"}}}


class FrozenPixels(Encoder):
    """A fixed random projection of the pixels: frozen, deterministic, fast; counts the rows it computes.

    ``crash_at`` (from the environment, for the crash test's child process) kills the process
    with SIGKILL at that call, as a power cut or the OOM killer would.
    """

    rows_computed = 0
    calls = 0

    def __init__(self, in_channels: int = 3, image_size: int = 16, seed: int = 0, output: str = "pooled") -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(in_channels * image_size * image_size, 8)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g))
            self.proj.bias.zero_()
        self.requires_grad_(False)
        self.seed, self.output = seed, output
        self.output_dim = 8

    @property
    def frozen(self) -> bool:
        return True

    def cache_key(self) -> dict:
        return {"encoder": self.encoder_name, "seed": self.seed, "output": self.output}

    def forward(self, batch):
        type(self).calls += 1
        if type(self).calls == int(os.environ.get("TESSERA_TEST_CRASH_AT", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        type(self).rows_computed += int(batch.present.sum())
        out = self.proj(batch.data.flatten(1)) * batch.present.unsqueeze(1)
        if self.output == "tokens":  # two tokens per row, the second masked out
            tokens = torch.stack([out, torch.zeros_like(out)], dim=1)
            return tokens, torch.stack([batch.present, torch.zeros_like(batch.present)], dim=1)
        return out, None


def register() -> None:
    if "test_frozen_pixels" not in ENCODERS:
        register_encoder("test_frozen_pixels")(FrozenPixels)


@pytest.fixture(autouse=True)
def frozen_pixels():
    register()
    FrozenPixels.rows_computed = FrozenPixels.calls = 0
    yield
    ENCODERS.unregister("test_frozen_pixels")


def fitted(table: Path, size: int = 16) -> tuple[Pipeline, object]:
    t = read_table(table)
    schema = Schema.from_dict({**IMAGE_ONLY, "inputs": {"image": {**IMAGE_ONLY["inputs"]["image"], "options": {"size": size}}}})
    pipeline = Pipeline.fit(t.frame, schema)
    return pipeline, pipeline.dataset(t, with_target=True)


def test_features_are_bit_identical_to_the_encoder_and_read_back_unchanged(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=20)
    pipeline, dataset = fitted(table)
    stage = feature_stage(pipeline, None, tmp_path / "cache")
    assert isinstance(stage, FrozenFeatures) and list(stage.encoders) == ["image"]
    first = cache_split(pipeline, dataset, batch_size=8, features=stage)
    assert first.inputs["image"].is_features and stage.computed == 20 and stage.reused == 0
    # What the encoder gives on the same rows, computed directly: the same bits.
    decoded = cache_split(pipeline, dataset, batch_size=8).inputs["image"]
    direct = torch.cat([stage.encoders["image"](decoded.index(torch.arange(s, min(s + 8, 20))))[0] for s in range(0, 20, 8)])
    assert torch.equal(first.inputs["image"].data, direct)
    # A new stage (another run) reads every row back from disk, bit for bit, computing nothing.
    again = feature_stage(pipeline, None, tmp_path / "cache")
    second = cache_split(pipeline, dataset, batch_size=8, features=again)
    assert again.computed == 0 and again.reused == 20
    assert torch.equal(second.inputs["image"].data, first.inputs["image"].data)
    assert torch.equal(second.target, first.target) and torch.equal(second.rows, first.rows)


def test_token_features_keep_their_mask_and_absent_rows_are_zero(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=6)
    frame = pd.read_csv(table)
    frame.loc[2, "image"] = None
    frame.to_csv(table, index=False)
    pipeline, dataset = fitted(table)
    stage = feature_stage(pipeline, {"image": {"options": {"output": "tokens"}}}, tmp_path / "cache")
    feats = cache_split(pipeline, dataset, features=stage).inputs["image"]
    assert feats.data.shape == (6, 2, 8) and feats.mask.shape == (6, 2)
    assert not feats.present[2] and not feats.mask[2].any() and torch.all(feats.data[2] == 0)
    assert feats.mask[[0, 1, 3], 0].all() and not feats.mask[:, 1].any()
    reread = cache_split(pipeline, dataset, features=feature_stage(pipeline, {"image": {"options": {"output": "tokens"}}}, tmp_path / "cache"))
    assert torch.equal(reread.inputs["image"].mask, feats.mask) and torch.equal(reread.inputs["image"].data, feats.data)


def test_same_content_is_computed_once_even_under_another_name(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=4)
    frame = pd.read_csv(table)
    (tmp_path / "t" / "copy.png").write_bytes((tmp_path / "t" / frame.loc[0, "image"]).read_bytes())
    frame.loc[3, "image"] = "copy.png"
    frame.to_csv(table, index=False)
    pipeline, dataset = fitted(table)
    stage = feature_stage(pipeline, None, tmp_path / "cache")
    feats = cache_split(pipeline, dataset, features=stage).inputs["image"]
    assert stage.computed == 3 and FrozenPixels.rows_computed == 3
    assert torch.equal(feats.data[0], feats.data[3])


def test_changing_the_tower_or_the_preprocessing_invalidates(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=8)
    cache = tmp_path / "cache"
    pipeline, dataset = fitted(table)
    base = feature_stage(pipeline, None, cache)
    cache_split(pipeline, dataset, features=base)
    other_tower = feature_stage(pipeline, {"image": {"options": {"seed": 1}}}, cache)
    cache_split(pipeline, dataset, features=other_tower)
    assert other_tower.computed == 8 and other_tower.reused == 0
    bigger, bigger_rows = fitted(table, size=8)
    other_pre = feature_stage(bigger, {"image": {"options": {"image_size": 8}}}, cache)
    cache_split(bigger, bigger_rows, features=other_pre)
    assert other_pre.computed == 8 and other_pre.reused == 0
    paths = {s.stores["image"].path for s in (base, other_tower, other_pre)}
    assert len(paths) == 3 and all(p.parent == cache for p in paths)
    # ... while the original is still there, untouched.
    same = feature_stage(pipeline, None, cache)
    cache_split(pipeline, dataset, features=same)
    assert same.computed == 0 and same.reused == 8


CHILD = """
import sys
import torch
torch.set_num_threads(1)  # as tests/conftest.py sets it for the parent
from tests.test_features import fitted, register
from tessera.features import feature_stage
from tessera.pipeline import cache_split
register()
pipeline, dataset = fitted(sys.argv[1])
stage = feature_stage(pipeline, None, sys.argv[2])
stage.chunk = 4
cache_split(pipeline, dataset, batch_size=16, features=stage)
"""


def test_a_fill_killed_mid_way_keeps_what_it_committed(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=16)
    cache = tmp_path / "cache"
    env = {**os.environ, "TESSERA_TEST_CRASH_AT": "3", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    child = subprocess.run([sys.executable, "-c", CHILD, str(table), str(cache)], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr  # killed in the third chunk's encoder call
    (path,) = cache.glob("*.sqlite")
    assert len(FeatureStore(path, {})) == 8  # the two chunks committed before the kill
    pipeline, dataset = fitted(table)
    stage = feature_stage(pipeline, None, cache)
    stage.chunk = 4
    resumed = cache_split(pipeline, dataset, batch_size=16, features=stage)
    assert stage.reused == 8 and stage.computed == 8
    clean = cache_split(pipeline, dataset, batch_size=16, features=feature_stage(pipeline, None, tmp_path / "clean"))
    # Equal to float precision, not bit for bit: the killed child is another process (once, before
    # its threads were pinned like the parent's, 1e-4 apart on values near 70). A wrong row is far off.
    torch.testing.assert_close(resumed.inputs["image"].data, clean.inputs["image"].data, rtol=1e-5, atol=1e-4)


def test_fit_reuses_features_across_epochs_and_runs_and_predicts_the_same_from_raw_rows(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=24)
    train = {"epochs": 3, "batch_size": 8, "device": "cpu", "cache_dir": str(tmp_path / "cache"), "patience": 0}
    first = Predictor(train=train).fit(table, IMAGE_ONLY, skip_report=tmp_path / "skips.csv")
    assert FrozenPixels.rows_computed == 24  # once per row over 3 epochs, validation included
    FrozenPixels.rows_computed = 0
    Predictor(train=train).fit(table, IMAGE_ONLY, skip_report=tmp_path / "skips.csv")
    assert FrozenPixels.rows_computed == 0  # a later fit on the same table reads them all
    # Predicting on raw rows runs the tower inside the model: the same outputs as on cached features.
    raw = first.predict_proba(table)
    prepared = prepare(table, IMAGE_ONLY, None, DataSettings(cache_dir=tmp_path / "cache"), encoders={})
    source = prepared.splits["train"]
    out, _, rows = run_inference(first.model, source, 64, torch.device("cpu"))
    expected = torch.softmax(out, dim=-1).numpy()
    assert abs(raw.loc[rows.numpy()].to_numpy() - expected).max() < 1e-5


def test_without_the_feature_cache_the_model_runs_the_tower_every_epoch(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=24)
    train = {"epochs": 3, "batch_size": 8, "device": "cpu", "feature_cache": False, "patience": 0}
    Predictor(train=train).fit(table, IMAGE_ONLY, skip_report=tmp_path / "skips.csv")
    assert FrozenPixels.rows_computed > 3 * 20  # every epoch's training rows, and validation


def test_features_for_an_encoder_that_learns_are_refused(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=8)
    pipeline, dataset = fitted(table)
    feats = cache_split(pipeline, dataset, features=feature_stage(pipeline, None, None)).inputs["image"]
    learning = ENCODERS.create("image_cnn", in_channels=3, dim=8)
    with pytest.raises(TesseraError, match="precomputed frozen features"):
        learning.encoded(feats)


def test_the_index_builder_reads_the_features_training_stored(tmp_path):
    from tessera.align import Embedder, fit_alignment

    table = write_tiny_table(tmp_path / "t", n=16)
    text = {"modality": "text", "options": {"max_length": 12, "vocab_size": 200, "min_frequency": 1}}
    schema = {"inputs": {"image": IMAGE_ONLY["inputs"]["image"], "caption": text}}
    cache = tmp_path / "cache"
    prepared = prepare(table, schema, None, DataSettings(cache_dir=cache), supervised=False, skip_report=None)
    assert FrozenPixels.rows_computed == 16 and prepared.splits["train"].inputs["image"].is_features
    embedder = Embedder.create(prepared.pipeline, dim=8, encoder_dim=8)
    fit_alignment(embedder.model, prepared.splits["train"], epochs=1, batch_size=4, device="cpu")
    FrozenPixels.rows_computed = 0
    plain = dict(zip(*map(np.concatenate, zip(*embedder.embed_table(table, "image")))))  # row -> vector
    assert FrozenPixels.rows_computed == 16  # no cache: the tower runs
    FrozenPixels.rows_computed = 0
    embedder.feature_cache = cache
    cached = dict(zip(*map(np.concatenate, zip(*embedder.embed_table(table, "image")))))
    assert FrozenPixels.rows_computed == 0
    assert plain.keys() == cached.keys()
    assert max(np.abs(plain[r] - cached[r]).max() for r in plain) < 1e-6


def test_streamed_splits_read_features_from_the_store_after_the_first_epoch(tmp_path):
    table = write_tiny_table(tmp_path / "t", n=24)
    train = {"epochs": 3, "batch_size": 8, "device": "cpu", "cache": False, "cache_dir": str(tmp_path / "cache"), "patience": 0}
    Predictor(train=train).fit(table, IMAGE_ONLY, skip_report=tmp_path / "skips.csv")
    assert FrozenPixels.rows_computed == 24  # epoch 1 (and validation) computed them; epochs 2 and 3 read them


def test_the_arms_of_a_comparison_share_one_computation(tmp_path):
    from tessera.workflows.compare import compare_models

    table = write_tiny_table(tmp_path / "t", n=24)
    schema = {**IMAGE_ONLY, "inputs": {**IMAGE_ONLY["inputs"], "numeric": {"modality": "numeric", "columns": ["price"]}}}
    frame = pd.read_csv(table).assign(split=["train"] * 16 + ["val"] * 4 + ["test"] * 4)
    frame.to_csv(table, index=False)
    prepared = prepare(table, {**schema, "split": "split"}, None, DataSettings(cache_dir=tmp_path / "cache"), skip_report=None)
    assert FrozenPixels.rows_computed == 24
    comparison = compare_models(prepared.pipeline, prepared.splits, train={"epochs": 2, "batch_size": 8, "device": "cpu"}, n_boot=20)
    assert list(comparison.table["model"]) == ["image only", "numeric only", "fusion"]
    assert FrozenPixels.rows_computed == 24  # the image-only arm and the fusion ran no tower


@pytest.mark.realdata
def test_a_real_tower_through_the_cache_gives_its_own_features_bit_for_bit(tmp_path, shared_data):
    """MobileNetV2 over three Flickr photos: the stage's features are the tower's on the same batch, read back
    unchanged; other preprocessing (stretch instead of crop) is another store with other features."""
    from tests.encoders.towers import PHOTOS, load_tower

    load_tower("mobilenet_v2")  # skips when the package is absent
    frame = pd.DataFrame({"photo": [str(shared_data / "flickr8k_1k" / "images" / p) for p in PHOTOS]})
    t = read_table(frame)
    stores, features = [], []
    for resize in ("crop", "crop", "stretch"):
        schema = Schema.from_dict({"inputs": {"photo": {"modality": "image", "encoder": "mobilenet_v2", "options": {"resize": resize}}}})
        pipeline = Pipeline.fit(frame, schema)
        stage = feature_stage(pipeline, None, tmp_path / "cache")
        dataset = pipeline.dataset(t, with_target=False)
        got = cache_split(pipeline, dataset, features=stage).inputs["photo"]
        decoded = cache_split(pipeline, dataset).inputs["photo"]
        if not stage.reused:
            assert torch.equal(got.data, stage.encoders["photo"](decoded)[0])
        stores.append((stage.stores["photo"].path, stage.computed, stage.reused))
        features.append(got.data)
    assert stores[0][1:] == (3, 0) and stores[1] == (stores[0][0], 0, 3) and stores[2][0] != stores[0][0]
    assert torch.equal(features[0], features[1]) and not torch.allclose(features[0], features[2])
