"""The one preparation step: validate once, split, drop unknown targets, cap, fit on train, decode with a skip report."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.errors import DataError, SchemaError
from tessera.pipeline import CachedSplit
from tessera.predictor import Predictor
from tessera.prepare import DataSettings, prepare, split_and_fit
from tessera.schema import Schema


def only(schema: dict, *inputs: str) -> dict:
    return {**schema, "inputs": {k: schema["inputs"][k] for k in inputs}}


def test_a_fit_validates_the_table_against_the_schema_once(tiny_table, tiny_schema, monkeypatch):
    calls = []
    validate = Schema.validate
    monkeypatch.setattr(Schema, "validate", lambda self, *a, **kw: (calls.append(kw.get("source")), validate(self, *a, **kw))[1])
    p = Predictor(model={"dim": 8}, train={"epochs": 1, "batch_size": 16}).fit(tiny_table, only(tiny_schema, "numeric", "image"))
    assert calls == [str(tiny_table)]  # not again per split, nor when fitting the preprocessors
    p.predict(tiny_table)
    assert len(calls) == 2  # a new table to predict on is checked, once


def test_split_and_fit_fits_on_train_rows_and_decodes_nothing(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table)
    frame["image"] = [f"img/not-there-{i}.png" for i in range(len(frame))]  # fine until something decodes
    frame["split"] = ["train"] * 30 + ["val"] * 8 + ["test"] * 10
    path = tiny_table.parent / "split.csv"
    frame.to_csv(path, index=False)
    parts = split_and_fit(path, {**only(tiny_schema, "numeric", "image"), "split": "split"}, None, DataSettings())
    assert {k: len(t.frame) for k, t in parts.tables.items()} == {"train": 30, "val": 8, "test": 10}
    mean = parts.pipeline.preprocessors["numeric"].reference_statistics()["price"][0]
    assert mean == pytest.approx(frame["price"][:30].mean())  # statistics from the training rows only
    assert parts.tables["val"].base_dir == str(tiny_table.parent)
    with pytest.raises(DataError, match="file not found"):
        prepare(path, {**only(tiny_schema, "numeric", "image"), "split": "split"})


def test_rows_without_a_target_are_left_out_and_the_training_rows_capped(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table)
    frame.loc[:5, "label"] = None
    with pytest.warns(UserWarning, match="row\\(s\\) have no target value and are left out"):
        data = prepare(frame, only(tiny_schema, "numeric"), None, DataSettings(max_train_rows=20, seed=1))
    assert len(data.splits["train"]) == 20 and isinstance(data.splits["train"], CachedSplit)
    assert all(r > 5 for split in data.splits.values() for r in split.rows.tolist())
    with pytest.raises(SchemaError, match="fit needs a target"):
        prepare(frame, {"inputs": {"numeric": {"modality": "numeric", "columns": ["price"]}}})


def test_unsupervised_preparation_ignores_the_target_and_decodes_the_splits_asked_for(tiny_table, tiny_schema):
    data = prepare(tiny_table, only(tiny_schema, "numeric", "caption"), None, DataSettings(), supervised=False, only=("train",))
    assert data.pipeline.target is None and set(data.splits) == {"train"}
    assert data.splits["train"].target is None


def test_skipped_rows_are_reported_in_a_file_and_a_warning(tiny_table, tiny_schema, tmp_path):
    frame = pd.read_csv(tiny_table)
    frame.loc[[3, 7], "image"] = "img/gone.png"
    path = tiny_table.parent / "broken.csv"
    frame.to_csv(path, index=False)
    report = tmp_path / "skipped.csv"
    with pytest.warns(UserWarning, match="skipped 2 row"):
        data = prepare(path, only(tiny_schema, "image"), None, DataSettings(on_error="skip"), skip_report=report)
    assert sorted(e.row for e in data.skip_report.rows) == [3, 7]
    assert len(pd.read_csv(report)) == 2
    assert sum(len(s) for s in data.splits.values()) == len(frame) - 2


def test_without_a_split_column_a_seeded_split_holds_out_test_rows(tiny_table, tiny_schema):
    first = split_and_fit(tiny_table, only(tiny_schema, "numeric"), None, DataSettings(seed=3))
    again = split_and_fit(tiny_table, only(tiny_schema, "numeric"), None, DataSettings(seed=3))
    sizes = {k: len(t.frame) for k, t in first.tables.items()}
    assert sizes == {"train": 38, "val": 5, "test": 5}
    assert all(first.tables[k].frame.index.equals(again.tables[k].frame.index) for k in sizes)  # seeded
    assert "no split column" in first.split_note and "seed 3" in first.split_note
    unsupervised = split_and_fit(tiny_table, only(tiny_schema, "numeric"), None, DataSettings(), supervised=False)
    assert set(unsupervised.tables) == {"train", "val"}  # alignment scores on validation rows; no test carved out
