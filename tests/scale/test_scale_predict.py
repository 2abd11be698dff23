"""Batch prediction on Ray: the local runner's predictions, as Parquet; bad rows skipped or named."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.errors import DataError
from tessera.predictor import Predictor
from tessera.scale.predict import predict_ray


@pytest.fixture
def trained(tiny_table, tiny_schema):
    schema = {"target": "label", "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "numeric", "categorical")}}
    return Predictor(model={"dim": 8}, train={"epochs": 1, "batch_size": 16, "num_workers": 0}).fit(tiny_table, schema=schema)


def test_ray_predictions_equal_local_ones(ray_cluster, trained, tiny_table, tmp_path) -> None:
    out = tmp_path / "pred.parquet"
    assert predict_ray(trained, tiny_table, out, proba=True, batch_size=10) == 48
    got = pd.read_parquet(out).sort_index()
    expected = trained.predict_proba(tiny_table)
    assert got.index.name == "row"
    pd.testing.assert_frame_equal(got, expected, check_names=False, atol=1e-6)


@pytest.mark.slow
def test_bad_rows_follow_on_error(ray_cluster, trained, tiny_table, tmp_path) -> None:
    frame = pd.read_csv(tiny_table)
    (tiny_table.parent / "broken.png").write_bytes(b"not a png")
    frame.loc[[3, 30], "image"] = "broken.png"
    bad = tiny_table.parent / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"row (3|30), column 'image', file '.*broken.png'"):
        predict_ray(trained, bad, tmp_path / "raise.parquet", on_error="raise", batch_size=10)
    assert not (tmp_path / "raise.parquet").exists()
    report = tmp_path / "skipped.csv"
    with pytest.warns(UserWarning, match="skipped 2 row"):
        n = predict_ray(trained, bad, tmp_path / "skip.parquet", on_error="skip", batch_size=10, skip_report=report)
    assert n == 46 and pd.read_csv(report)["row"].tolist() == [3, 30]
    labels = pd.read_parquet(tmp_path / "skip.parquet").sort_index()
    assert 3 not in labels.index and len(labels) == 46
