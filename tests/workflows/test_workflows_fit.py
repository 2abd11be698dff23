"""`tessera fit`'s workflow: the config names the runner, the caller supplies its code."""

from __future__ import annotations

import pytest

from tessera.config import parse_fit_config
from tessera.errors import TesseraError
from tessera.predictor import Predictor
from tessera.workflows.fit import local_fit, run_fit


def test_run_fit_trains_with_the_function_it_is_given(tiny_table, tiny_schema, tmp_path):
    schema = {**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}}
    raw = {"data": {"table": str(tiny_table), "schema": schema}, "model": {"dim": 8}, "train": {"epochs": 1}, "output": "m"}
    calls = []

    def runner(predictor, table, schema, *, target=None):
        calls.append((table, target))
        return local_fit(predictor, table, schema, target=target)

    predictor, out = run_fit(parse_fit_config({**raw, "runner": "ray"}, base_dir=tmp_path), fit=runner)
    assert calls == [(tiny_table, None)] and out == tmp_path / "m"
    assert Predictor.load(out).model is not None and set(predictor.metrics) == {"test"}  # the seeded split holds out test rows
    with pytest.raises(TesseraError, match="runner 'ray': run it with `tessera fit`, or pass that runner's fit function"):
        run_fit(parse_fit_config({**raw, "runner": "ray"}, base_dir=tmp_path))
