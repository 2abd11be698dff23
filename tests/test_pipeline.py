"""The pipeline: streamed and cached decoding agree; workers return errors instead of dumping tracebacks."""

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import DataError, SkipReport
from tessera.pipeline import Pipeline, cache_split, iterate, split_frame
from tessera.schema import Schema
from tessera.table import read_table


@pytest.fixture
def fitted(tiny_table, tiny_schema):
    table = read_table(tiny_table)
    schema = Schema.from_dict(tiny_schema)
    return Pipeline.fit(split_frame(table.frame, schema)["train"], schema), table


def test_stream_and_cache_decode_the_same(fitted):
    pipeline, table = fitted
    ds = pipeline.dataset(table)
    cached = cache_split(pipeline, ds, batch_size=7)
    streamed = list(iterate(pipeline.loader(ds, batch_size=7, num_workers=2)))
    assert torch.equal(torch.cat([b.rows for b in streamed]), cached.rows)
    for name in pipeline.preprocessors:
        data = torch.cat([b.inputs[name].data for b in streamed])
        assert torch.equal(data, cached.inputs[name].data), name
    assert torch.equal(torch.cat([b.target for b in streamed]), cached.target)


def test_worker_errors_arrive_as_data_errors_with_location(fitted, tiny_table):
    pipeline, table = fitted
    (tiny_table.parent / "img" / "4.png").write_bytes(b"garbage")
    ds = pipeline.dataset(table)
    with pytest.raises(DataError, match=r"^row 4, column 'image', file '.*4\.png'"):
        list(iterate(pipeline.loader(ds, batch_size=8, num_workers=2)))
    report = SkipReport()
    skip_ds = pipeline.dataset(table, on_error="skip")
    rows = torch.cat([b.rows for b in iterate(pipeline.loader(skip_ds, batch_size=8, num_workers=2), report)])
    assert 4 not in rows.tolist() and len(rows) == 47
    assert [e.row for e in report.rows] == [4]


def test_restrict_keeps_the_fitted_state(fitted):
    pipeline, _ = fitted
    audio_only = pipeline.restrict(["audio"])
    assert list(audio_only.preprocessors) == ["audio"]
    assert audio_only.preprocessors["audio"] is pipeline.preprocessors["audio"]
    assert audio_only.target is pipeline.target
    with pytest.raises(Exception, match="unknown input"):
        pipeline.restrict(["smell"])


def test_state_round_trip_decodes_identically(fitted):
    pipeline, table = fitted
    again = Pipeline.from_state(pipeline.state_dict())
    a = cache_split(pipeline, pipeline.dataset(table))
    b = cache_split(again, again.dataset(table))
    for name in pipeline.preprocessors:
        assert torch.equal(a.inputs[name].data, b.inputs[name].data), name


def test_predictor_streams_when_cache_is_off(tiny_table, tiny_schema):
    from tessera.pipeline import StreamSplit
    from tessera.predictor import Predictor
    from tessera.prepare import prepare

    p = Predictor(model={"dim": 8}, train={"epochs": 1, "batch_size": 16, "cache": False, "num_workers": 0})
    data = prepare(tiny_table, tiny_schema, None, p.train_config)
    assert isinstance(data.splits["train"], StreamSplit)
    p.fit_prepared(data.pipeline, data.splits)
    assert 0.0 <= p.metrics.get("test", {"accuracy": 0.0})["accuracy"] <= 1.0
    assert len(p.predict(tiny_table)) == 48
