"""preset: best: every family trained, the ensemble chosen on validation rows, a time budget, save and load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tessera.errors import SchemaError, TesseraError
from tessera.model import ModelConfig
from tessera.predictor import InferenceConfig, Predictor
from tessera.table import Table
from tessera.train import TrainConfig
from tessera.workflows.best import fit_best

TRAIN = {"epochs": 1, "batch_size": 16, "num_workers": 0}
WORDS = "red green blue tall short old new small big warm cold soft".split()


@pytest.fixture
def table(make_tiny_table):
    return make_tiny_table(96)


@pytest.mark.slow  # about 30 s on 2 busy cores: fourteen small models
def test_every_family_is_trained_the_ensemble_is_chosen_on_validation_and_predicts_after_load(table, tiny_schema, tmp_path):
    predictor = Predictor(model={"dim": 16}, train=TRAIN, preset="best", exclude=["towers"]).fit(table, tiny_schema)
    board = predictor.ensemble.leaderboard
    assert board["model"].iloc[0] == "ensemble"
    assert {"sklearn", "network", "features network"} <= set(board["kind"])
    assert {"gbm", "gbm tabular", "linear", "linear image", "features concat", "image only", "fusion concat", "fusion late"} <= set(board["model"])
    members = board[board["kind"] != "ensemble"]
    assert board["val_accuracy"].iloc[0] >= members["val_accuracy"].max()  # never below its best member on validation
    assert board["weight"].iloc[1:].sum() == pytest.approx(1.0)
    assert "test" in predictor.metrics and "no split column" in predictor.split_note  # a seeded split, test rows held out

    proba = predictor.predict_proba(table)
    out = predictor.save(tmp_path / "best")
    meta = json.loads((out / "ensemble.json").read_text())
    kept = [m for m in meta["members"] if m["kind"] == "sklearn"]
    assert all((out / "members" / f"{m['folder']}.skops").is_file() for m in kept)
    assert (out / "leaderboard.csv").is_file()
    loaded = Predictor.load(out)
    assert np.allclose(loaded.predict_proba(table).to_numpy(), proba.to_numpy(), atol=1e-5)
    assert set(loaded.predict(table)) <= {0, 1, 2, 3}
    assert loaded.evaluate(table)["n"] == 96


def test_the_default_fusion_member_is_what_predictor_fit_trains(table, tiny_schema):
    frame = pd.read_csv(table)
    frame["split"] = ["train"] * 64 + ["val"] * 16 + ["test"] * 16
    frame.to_csv(table, index=False)
    s = {**tiny_schema, "split": "split"}
    result = fit_best(table, s, None, ModelConfig(dim=16), TrainConfig(**TRAIN), InferenceConfig(num_workers=0),
                      exclude=["towers", "gbm", "linear", "features networks", "unimodal networks"], skip_report=None)
    assert set(result.scores) == {"fusion concat", "fusion late", "ensemble"}
    alone = Predictor(model={"dim": 16}, train=TRAIN).fit(table, s)
    test = Table(frame[frame["split"] == "test"], str(table.parent), "test rows")
    assert np.allclose(result.scores["fusion concat"]["test"], alone.predict_proba(test).to_numpy(), atol=1e-5)


def test_no_model_starts_once_the_time_limit_is_spent_but_one_always_trains(table, tiny_schema):
    predictor = Predictor(model={"dim": 16}, train=TRAIN, preset="best", time_limit=0.01, exclude=["towers"]).fit(table, tiny_schema)
    board = predictor.ensemble.leaderboard
    trained = board[board["note"].fillna("") == ""]
    assert list(trained["model"]) == ["ensemble", "gbm"]  # the first candidate only
    skipped = board[board["note"].fillna("").str.startswith("not started")]
    assert {"fusion concat", "image only", "linear"} <= set(skipped["model"])
    from tessera.finetune import fine_tune

    with pytest.raises(TesseraError, match="fine-tuning needs a single trained network; .* ensemble of gbm"):
        fine_tune(predictor, [table])


def test_regression_ensembles_values():
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], n)
    frame = pd.DataFrame({
        "x": x, "colour": colour, "note": [f"it is {c} and quite {'big' if v > 0 else 'small'}" for c, v in zip(colour, x)],
        "price": 3 * x + (colour == "red") * 2 + rng.normal(0, 0.1, n),
    })
    predictor = Predictor(model={"dim": 16}, train=TRAIN, preset="best", exclude=["towers", "features networks"]).fit(frame, target="price")
    assert predictor.ensemble.task.name == "regression"
    values = predictor.predict(frame)
    assert values.dtype.kind == "f" and len(values) == n
    board = predictor.ensemble.leaderboard
    assert board["val_r2"].iloc[0] >= board["val_r2"].iloc[1:].max() - 1e-12
    assert predictor.metrics["test"]["r2"] > 0.8


def test_an_input_whose_tower_is_over_budget_and_has_no_other_features_is_left_to_the_networks(monkeypatch):
    import tessera.workflows.best as best

    monkeypatch.setattr(best, "seconds_per_row", lambda *a, **k: 1e6)  # every tower over budget
    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    frame = pd.DataFrame({"x": x, "note": [" ".join(rng.choice(WORDS, 6)) for _ in x], "label": (x > 0).astype(int)})
    predictor = Predictor(train=TRAIN, preset="best", time_limit=600,
                          exclude=["linear", "features networks", "unimodal networks", "fusion networks"]).fit(frame, target="label")
    board = predictor.ensemble.leaderboard
    assert board["note"].fillna("").str.contains("features not computed: estimated").any()
    assert list(board[board["kind"] == "sklearn"]["inputs"]) == ["numeric"]  # gbm on the number only: text has no frozen features


def test_bad_settings_are_refused():
    with pytest.raises(SchemaError, match="preset must be one of"):
        Predictor(preset="fast")
    with pytest.raises(SchemaError, match="add preset='best'"):
        Predictor(exclude=["gbm"])
    with pytest.raises(SchemaError, match="time_limit must be a positive number"):
        Predictor(preset="best", time_limit=0)
    with pytest.raises(SchemaError, match=r"exclude: unknown family \['trees'\]"):
        Predictor(preset="best", exclude=["trees"]).fit(pd.DataFrame({"a": [1.0, 2.0] * 10, "y": [0, 1] * 10}), target="y")
