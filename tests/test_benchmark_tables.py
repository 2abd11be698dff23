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


def test_summary_counts_tables_and_lists_each_arm(benchmark_module):
    tables = benchmark_module("tables")

    def result(single: str, gbm: str) -> dict:
        gain = {"gain": 0.02, "low": 0.01, "high": 0.03}
        arms = {
            "best single input": {"model": "image only", "accuracy": 0.70},
            "gradient boosting (tabular columns)": {"model": None, "note": "no tabular columns"},
            "default fusion": {"model": "fusion concat", "accuracy": 0.69, "gain_over_best_single_input": gain},
            "preset best": {"model": "ensemble", "accuracy": 0.72, "accuracy_low": 0.7, "accuracy_high": 0.74,
                            "gain_over_best_single_input": gain},
        }
        return {"arms": arms, "settings": {"epochs": 3}, "preset_best_vs_best_single_input": single,
                "preset_best_vs_gradient_boosting": gbm}

    summary = tables.summarize({"a": result("better", "n/a"), "b": result("no significant difference", "worse")})
    assert (summary["tables"], summary["preset_best_significantly_better"], summary["preset_best_significantly_worse"]) == (2, 1, 1)
    assert summary["goal_met"] is False
    row = summary["per_table"]["a"]
    assert row["preset_best"] == 0.72 and row["best_single_input_model"] == "image only" and row["gradient_boosting"] is None
    assert row["preset_best_gain"] == [0.02, 0.01, 0.03] and row["metric"] == "accuracy"
