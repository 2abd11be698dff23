import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import TesseraError
from tessera.predictor import Predictor


def test_fit_learns_save_load_round_trip(tiny_table, tiny_schema, tmp_path):
    p = Predictor(model={"dim": 32}, train={"epochs": 25, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 1}).fit(
        tiny_table, schema=tiny_schema
    )
    assert p.result.history[-1]["train_loss"] < p.result.history[0]["train_loss"]
    metrics = p.evaluate(tiny_table)
    assert metrics["accuracy"] > 0.9  # label = image bit + audio bit: learnable only by fusing both
    out = p.save(tmp_path / "model")
    meta = json.loads((out / "tessera.json").read_text())
    assert meta["pipeline"]["preprocessors"]["caption"]["fitted"]["tokenizer_json"]  # tokenizer travels with the model
    q = Predictor.load(out)
    new = pd.read_csv(tiny_table).drop(columns=["label"])  # predict needs no target
    # base_dir: the new table in memory has relative paths; give them a folder via a file
    new.to_csv(tiny_table.parent / "new.csv", index=False)
    pd.testing.assert_series_equal(p.predict(tiny_table.parent / "new.csv"), q.predict(tiny_table.parent / "new.csv"))
    np.testing.assert_allclose(p.predict_proba(tiny_table).to_numpy(), q.predict_proba(tiny_table).to_numpy(), atol=1e-6)


def test_same_seed_same_model(tiny_table, tiny_schema):
    def run():
        p = Predictor(model={"dim": 16}, train={"epochs": 2, "batch_size": 16, "seed": 3}).fit(tiny_table, schema=tiny_schema)
        return p.predict_proba(tiny_table).to_numpy()

    np.testing.assert_array_equal(run(), run())


def test_interrupted_save_keeps_previous_model(tiny_table, tiny_schema, tmp_path, monkeypatch):
    p = Predictor(model={"dim": 16}, train={"epochs": 1, "batch_size": 16}).fit(tiny_table, schema={**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}})
    out = p.save(tmp_path / "model")
    before = (out / "model.pt").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        p.save(out)
    assert (out / "model.pt").read_bytes() == before
    assert Predictor.load(out).predict(tiny_table).shape[0] == 48
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".model")]  # no temp leftovers


def test_regression_and_untrained_errors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1] + 0.05 * rng.normal(size=200)})
    p = Predictor(model={"dim": 32}, train={"epochs": 40, "batch_size": 32, "lr": 1e-2, "patience": 0}).fit(frame, target="y")
    m = p.evaluate(frame)
    assert m["r2"] > 0.8, m
    with pytest.raises(TesseraError, match="not trained"):
        Predictor().predict(frame)
    with pytest.raises(TesseraError, match="not a saved Tessera model"):
        Predictor.load(tmp_path)


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_model_saved_before_inference_settings_existed_loads_and_predicts_the_same():
    """tests/fixtures/model_v0_1_0 was saved by Tessera 0.1.0 (commit b7bc7f1), whose tessera.json has only a train_config."""
    folder = FIXTURES / "model_v0_1_0"
    assert "inference_config" not in json.loads((folder / "tessera.json").read_text())
    p = Predictor.load(folder)
    assert p.train_config.on_error == "skip" and p.train_config.batch_size == 16
    assert p.inference.to_dict() == {
        "device": "cpu", "batch_size": 32, "on_error": "skip", "num_workers": 0, "cache": True,
        "feature_cache": False, "cache_dir": None,
    }
    expected = pd.read_csv(FIXTURES / "model_v0_1_0_proba.csv", index_col="row")
    got = p.predict_proba(pd.read_csv(FIXTURES / "model_v0_1_0_rows.csv"))
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_index_type=False, check_dtype=False, atol=1e-6, rtol=0)


def test_inference_settings_are_saved_and_used_apart_from_training(tiny_table, tiny_schema, tmp_path):
    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "numeric")}}
    p = Predictor(model={"dim": 8}, train={"epochs": 1, "batch_size": 16}, inference={"batch_size": 5, "on_error": "skip"})
    p.fit(tiny_table, schema)
    assert p.train_config.on_error == "raise" and p.inference.on_error == "skip"
    loaded = Predictor.load(p.save(tmp_path / "m"))
    assert loaded.inference.batch_size == 5 and loaded.inference.on_error == "skip"
    frame = pd.read_csv(tiny_table)
    frame.loc[4, "image"] = "img/gone.png"  # skipped under the inference settings, not refused
    frame.to_csv(tiny_table.parent / "broken.csv", index=False)
    with pytest.warns(UserWarning, match="skipped 1 row"):
        assert len(loaded.predict(tiny_table.parent / "broken.csv")) == len(frame) - 1


def test_predict_on_a_frame_keeps_its_index(tiny_table, tiny_schema):
    """Issue 18: predictions came back indexed 0..n-1, so they did not line up with a filtered or re-indexed frame."""
    schema = {**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}}
    p = Predictor(model={"dim": 16}, train={"epochs": 1, "batch_size": 16}).fit(tiny_table, schema=schema)
    frame = pd.read_csv(tiny_table)[["price"]].iloc[5:20]
    frame.index = [f"row-{i}" for i in frame.index]
    assert list(p.predict(frame).index) == list(frame.index)
    assert list(p.predict_proba(frame).index) == list(frame.index)
    pd.testing.assert_series_equal(p.predict(frame).reset_index(drop=True), p.predict(frame.reset_index(drop=True)))


def test_a_model_saved_before_audio_cnn_v2_rebuilds_v1_and_new_models_record_v2(tiny_table, tiny_schema, tmp_path):
    schema = {**tiny_schema, "inputs": {"audio": tiny_schema["inputs"]["audio"]}}
    old = Predictor(model={"dim": 8, "encoders": {"audio": {"name": "audio_cnn", "options": {"arch": "v1"}}}}, train={"epochs": 1})
    folder = old.fit(tiny_table, schema).save(tmp_path / "old")
    meta = json.loads((folder / "tessera.json").read_text())
    assert meta["encoder_versions"] == {"audio": {"arch": "v1"}}
    # As Tessera wrote it before encoders had versions: no arch anywhere, the default encoder implied.
    meta["model_config"]["encoders"] = {}
    del meta["encoder_versions"]
    (folder / "tessera.json").write_text(json.dumps(meta))
    loaded = Predictor.load(folder)
    assert loaded.model.encoders["audio"].arch == "v1"
    pd.testing.assert_frame_equal(loaded.predict_proba(tiny_table), old.predict_proba(tiny_table))

    new = Predictor(model={"dim": 8}, train={"epochs": 1}).fit(tiny_table, schema)
    assert new.model.encoders["audio"].arch == "v2"
    again = Predictor.load(new.save(tmp_path / "new"))
    assert again.model.encoders["audio"].arch == "v2"
    assert json.loads((tmp_path / "new" / "tessera.json").read_text())["encoder_versions"] == {"audio": {"arch": "v2"}}
