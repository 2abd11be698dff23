import json

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from scipy import stats
from typer.testing import CliRunner

from tessera.evaluate.cli import register
from tessera.evaluate.compare import mcnemar, paired_error_reduction, paired_gain


def outcomes(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, bool)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, bool)
    return a, b


def test_mcnemar_exact_and_chi_square():
    a, b = outcomes(50, 10, 2, 8)
    exact = mcnemar(a, b)
    assert (exact["a_only"], exact["b_only"]) == (10, 2)
    assert exact["p_value"] == pytest.approx(2 * (66 + 12 + 1) / 2**12)  # two-sided binomial, n = 12
    a, b = outcomes(100, 30, 10, 5)
    chi = mcnemar(a, b)
    assert "chi-square" in chi["method"]
    assert chi["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    assert chi["p_value"] == pytest.approx(stats.chi2.sf(9.025, 1))
    assert mcnemar(a, a)["p_value"] == 1.0


def test_paired_gain_interval():
    a, b = outcomes(300, 40, 15, 45)
    gain = paired_gain(a, b, n_boot=500)
    assert gain["gain"] == pytest.approx(25 / 400)
    assert 0 < gain["low"] < gain["gain"] < gain["high"]
    assert gain["p_value"] < 0.01
    same = paired_gain(a, a, n_boot=100)
    assert (same["gain"], same["low"], same["high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    rng = np.random.default_rng(0)
    err_b = np.abs(rng.normal(size=200))
    reduction = paired_error_reduction(err_b * 0.5, err_b, n_boot=200)
    assert reduction["gain"] == pytest.approx(err_b.mean() * 0.5) and reduction["p_value"] < 1e-6


def test_compare_command_trains_baselines_and_fusion(tiny_table, tiny_schema, tmp_path):
    frame = pd.read_csv(tiny_table)
    frame["split"] = ["test" if (i // 4) % 4 == 3 else "train" for i in range(len(frame))]  # every label in test
    frame.to_csv(tiny_table, index=False)
    schema = {**tiny_schema, "split": "split", "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "audio")}}
    config = {
        "data": {"table": str(tiny_table), "schema": schema},
        # An encoder set for one input must not break the baseline that lacks that input.
        "model": {"dim": 16, "encoders": {"audio": {"name": "audio_cnn", "options": {"width": 8}}}},
        "train": {"epochs": 10, "batch_size": 12, "lr": 3e-3, "patience": 0},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "config.yaml"), "--n-boot", "200", "--report", str(tmp_path / "cmp.json")])
    assert result.exit_code == 0, result.output
    assert "image only" in result.output and "audio only" in result.output and "fusion" in result.output
    assert "accuracy gain of fusion over" in result.output

    saved = json.loads((tmp_path / "cmp.json").read_text())
    comparison = saved["comparison"]
    assert comparison["split"] == "test" and saved["meta"]["n"] == 12
    assert sorted(r["model"] for r in comparison["table"]) == ["audio only", "fusion", "image only"]
    assert comparison["table"][-1]["model"] == "fusion"
    fusion = comparison["table"][-1]
    assert fusion["accuracy"] > 0.9  # the label needs both inputs
    # Every arm ran the same budget (patience 0: no early stopping); each row says how its training went.
    assert all(r["epochs"] == 10 and not r["stopped_early"] for r in comparison["table"])
    assert {"best_epoch", "still_improving", "output"} <= set(fusion) and isinstance(comparison["flags"], list)
    assert all(f[:60] in result.output for f in comparison["flags"])  # printed too
    assert max(r["accuracy"] for r in comparison["table"][:2]) <= 0.75
    gain = comparison["gain"]
    assert gain["low"] <= gain["gain"] <= gain["high"] and 0 <= gain["p_value"] <= 1
    assert gain["baseline"] in ("image only", "audio only")
    assert {r["input"]: r.get("unimodal") for r in saved["contribution"]["inputs"]}.keys() == {"image", "audio"}
    assert (tmp_path / "cmp.html").is_file()
