"""benchmarks/avmnist.py end to end in its reduced (CI) preset: builds a small AV-MNIST table
from the real sources, trains the baselines and two fusions, and writes the JSON (~70 s on 2 cores)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
@pytest.mark.realdata
def test_reduced_benchmark_writes_summary_and_missing_audio_curve(shared_data, tmp_path, monkeypatch, benchmark_module):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))  # a fresh small table, away from user caches
    out = tmp_path / "avmnist_reduced.json"
    bench = benchmark_module("avmnist")

    assert bench.main(["--reduced", "--out", str(out)]) == 0

    result = json.loads(out.read_text())
    summary = result["summary"]
    for key in ("image_only_accuracy", "audio_only_accuracy", "late_fusion_accuracy", "best_fusion_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["train_rows"] == 800 and summary["epochs"] == 2 and summary["train_samples_per_cpu_s"] > 0
    assert set(summary["targets"]) == {"best_fusion_above_85", "audio_only_at_least_60", "samples_per_cpu_s_at_least_210"}
    assert summary["best_fusion_strategy"] in result["strategies"]
    assert summary["best_fusion_accuracy"] == max(
        r["accuracy_mean"] for name, r in result["strategies"].items() if name not in ("image_only", "audio_only")
    )

    curve = result["missing_audio"]["curve"]
    assert [p["fraction_missing"] for p in curve] == [0.0, 0.25, 0.5, 1.0]
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)

    assert result["settings"]["protocol"].startswith("the CI preset, reduced")
    assert result["multibench_reference"]["figures"]["best_fusion"]["accuracy"] == 0.814  # measured on this data
    late = result["strategies"]["late"]
    assert late["epoch_seconds"] > 0 and late["inference_samples_per_s"] > 0 and late["params"] > 0
    run = late["runs"][0]
    assert run["fit_cpu_seconds"] > 0 and run["output"]["chosen"] in run["output"]["val_scores"]

    # A second seed merged into the first result: per-seed runs join, the curve is kept, seed clashes refused.
    merged = tmp_path / "merged.json"
    strategies = ["--strategies", "image_only", "audio_only", "concat", "late"]
    assert bench.main(["--reduced", "--first-seed", "1", "--seeds", "1", "--merge-with", str(out), "--out", str(merged), *strategies]) == 0
    both = json.loads(merged.read_text())
    assert both["settings"]["seeds"] == 2
    runs = both["strategies"]["late"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0] == late["runs"][0]
    assert both["strategies"]["late"]["accuracy_std"] is not None
    assert both["missing_audio"]["curve"] == curve
    with pytest.raises(SystemExit, match="seeds \\[1\\] were run already"):
        bench.main(["--reduced", "--first-seed", "1", "--seeds", "1", "--merge-with", str(merged), "--out", str(tmp_path / "x.json"), *strategies])

    # Seeds split over processes: one run with --skip-extras, then --seeds 0 only merges the files.
    third = tmp_path / "seed2.json"
    assert bench.main(["--reduced", "--first-seed", "2", "--seeds", "1", "--skip-extras", "--out", str(third), *strategies]) == 0
    assert json.loads(third.read_text())["missing_audio"] is None
    final = tmp_path / "final.json"
    assert bench.main(["--reduced", "--seeds", "0", "--merge-with", str(merged), "--merge-with", str(third),
                       "--out", str(final), *strategies]) == 0
    three = json.loads(final.read_text())
    assert three["settings"]["seeds"] == 3
    assert [r["seed"] for r in three["strategies"]["late"]["runs"]] == [0, 1, 2]
    assert three["missing_audio"]["curve"] == curve
