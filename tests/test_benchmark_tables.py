"""benchmarks/tables.py: each arm's interval and paired gain, and what counts as significant."""

import numpy as np

from tessera.tasks import create_task


def test_arms_and_significance(benchmark_module):
    tables = benchmark_module("tables")
    task = create_task("multiclass", ["y"])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    right = np.eye(2)[y] * 0.8 + 0.1
    half = np.where((np.arange(400) % 2 == 0)[:, None], right, right[:, ::-1])  # right on every other row
    base = tables.arm(task, y, half, None, n_boot=200)
    assert base["accuracy"] == 0.5 and base["accuracy_low"] < 0.5 < base["accuracy_high"]
    better = tables.arm(task, y, right, half, n_boot=200)
    gain = better["gain_over_best_single_input"]
    assert gain["gain"] == 0.5 and gain["low"] > 0
    assert tables.significance(gain) == "better"
    assert tables.significance({"low": -0.2, "high": -0.01}) == "worse"
    assert tables.significance({"low": -0.01, "high": 0.02}) == "no significant difference"
    assert tables.significance(None) == "n/a"
