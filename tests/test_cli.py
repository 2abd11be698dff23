"""The `tessera` command: help, inspect, fit/predict/evaluate, and one-line errors (exit code 2)."""

import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console
import yaml
from typer.testing import CliRunner

from tessera.cli import app

runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real entry point in a subprocess, as a user would (exit codes, stderr)."""
    return subprocess.run([sys.executable, "-m", "tessera.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "fit", "predict", "evaluate"):
        assert command in result.output
    result = runner.invoke(app, ["data", "--help"])
    assert "inspect" in result.output and "prepare" in result.output


def test_inspect_shows_schema_counts_and_decoded_examples(tiny_table, tmp_path):
    out_schema = tmp_path / "schema.yaml"
    result = runner.invoke(app, ["data", "inspect", str(tiny_table), "--save-schema", str(out_schema), "--examples", "2"])
    assert result.exit_code == 0, result.output
    assert "48 rows" in result.output
    assert "image" in result.output and "audio" in result.output and "text" in result.output
    assert "4 classes" in result.output
    saved = yaml.safe_load(out_schema.read_text())
    assert saved["target"] == "label" and saved["inputs"]["audio"]["modality"] == "audio"


def test_inspect_says_why_columns_are_left_out_and_how_fit_will_split(tiny_table):
    frame = pd.read_csv(tiny_table)
    frame["label_name"] = frame["label"].map({0: "zero", 1: "one", 2: "two", 3: "three"})  # the label again
    frame["row"] = range(len(frame))
    frame.to_csv(tiny_table, index=False)
    result = runner.invoke(app, ["data", "inspect", str(tiny_table), "--examples", "0"])
    assert result.exit_code == 0, result.output
    assert "row: unique in every row" in result.output
    assert "label_name: likely target leak" in result.output and "keep: [label_name]" in result.output
    assert "no split column: fit makes a seeded random 80/10/10 % train/val/test split" in result.output
    kept = runner.invoke(app, ["data", "inspect", str(tiny_table), "--examples", "0", "--keep", "label_name"])
    assert "label_name: likely target leak" not in kept.output and "label_name" in kept.output


def test_inspect_counts_missing_values_and_files(tiny_table):
    frame = pd.read_csv(tiny_table)
    frame.loc[[0, 1], "caption"] = None
    frame.loc[2, "image"] = "img/gone.png"
    frame.to_csv(tiny_table, index=False)
    from tessera.inspection import inspect_table

    console = Console(width=80, record=True)
    facts = inspect_table(tiny_table, examples=3, console=console)
    assert facts["inputs"]["caption"]["missing"] == 2
    assert facts["inputs"]["image"]["unreadable_refs"] == 1
    text = console.export_text()
    assert "row 2: img/gone.png (file not found" in " ".join(text.split())  # the unreadable file is named, not only counted
    assert max(len(line) for line in text.splitlines()) <= 80
    assert not any(line.strip("│ ") in ("because", "values", "per") for line in text.splitlines())  # no one-word-per-line wrapping
    assert "file not found" in facts["examples"]["image"][2]


def test_fit_predict_evaluate_from_config(tiny_table, tiny_schema, tmp_path):
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(tiny_schema))
    config = {
        "data": {"table": str(tiny_table), "schema": "schema.yaml"},
        "model": {"dim": 16},
        "train": {"epochs": 1, "batch_size": 16},
        "output": "model",
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["fit", str(tmp_path / "fit.yaml")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "tessera.json").exists()
    preds = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(tiny_table), "--output", str(preds)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(preds)) == 48
    result = runner.invoke(app, ["evaluate", str(tmp_path / "model"), str(tiny_table)])
    assert result.exit_code == 0 and "accuracy" in result.output


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    proc = run_cli("data", "inspect", str(tmp_path / "missing.csv"))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "table file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "bad.yaml").write_text("data: {table: t.csv}\ntrain: {epochs: 1, speed: fast}\n")
    proc = run_cli("fit", str(tmp_path / "bad.yaml"))
    assert proc.returncode == 2 and "unknown key(s) ['speed']" in proc.stderr and "Traceback" not in proc.stderr


def test_fit_without_schema_shows_the_inferred_one(tiny_table, tmp_path):
    config = {"data": {"table": str(tiny_table), "target": "label"}, "model": {"dim": 8},
              "train": {"epochs": 1, "batch_size": 16}, "output": "model"}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["fit", str(tmp_path / "fit.yaml")])
    assert result.exit_code == 0, result.output
    assert "inferred schema" in result.output and "modality: audio" in result.output
    assert "image: 48/48 sampled values look like image files" in result.output
    # No split column: a seeded split holds out test rows, and fit prints their metrics.
    assert "no split column: a seeded random split, 80/10/10 % train/val/test (seed 0): train 38, val 5, test 5" in result.output
    assert "test: accuracy=" in result.output


@pytest.mark.slow  # about 30 s on 2 busy cores: six small models, then predict and evaluate
def test_fit_preset_best_prints_the_leaderboard_and_predicts_with_the_ensemble(tiny_table, tiny_schema, tmp_path):
    config = {"data": {"table": str(tiny_table), "schema": tiny_schema}, "model": {"dim": 8},
              "train": {"epochs": 1, "batch_size": 16, "num_workers": 0}, "output": "best",
              "exclude": ["towers", "linear", "unimodal networks", "features networks"]}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["fit", str(tmp_path / "fit.yaml"), "--preset", "best", "--time-limit", "300"])
    assert result.exit_code == 0, result.output
    assert "leaderboard" in result.output and "fusion concat" in result.output and "gbm tabular" in result.output
    assert "test: accuracy=" in result.output
    assert (tmp_path / "best" / "ensemble.json").is_file()
    predicted = runner.invoke(app, ["predict", str(tmp_path / "best"), str(tiny_table), "--output", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 48
    evaluated = runner.invoke(app, ["evaluate", str(tmp_path / "best"), str(tiny_table), "--n-boot", "50"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "accuracy" in evaluated.output


def test_inspect_prepared_avmnist_and_flickr8k_counts(shared_data, tmp_path):
    """`tessera data inspect` on the prepared real tables reports the right split counts."""
    from tessera import datasets

    av = datasets.prepare("avmnist", cache_dir=tmp_path, download=False, progress=False, n_train=200, n_val=40, n_test=100)
    result = runner.invoke(app, ["data", "inspect", str(av.table_path), "--schema", str(av.schema_path), "--examples", "1"])
    assert result.exit_code == 0, result.output
    assert "300 rows" not in result.output and "340 rows" in result.output
    assert "train 200" in result.output and "test 100" in result.output and "val 40" in result.output
    assert "10 classes" in result.output
    frame = pd.read_parquet(av.table_path)
    test = frame[frame["split"] == "test"]
    takes = test["fsdd_file"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    assert takes.between(0, 4).all()  # FSDD test takes only

    fl = datasets.prepare("flickr8k", cache_dir=tmp_path, download=False, progress=False)
    from tessera.inspection import inspect_table

    facts = inspect_table(fl.table_path, schema=fl.schema_path, examples=1)
    assert facts["rows"] == 5000
    assert facts["splits"] == {"train": 4000, "test": 1000}
    assert {i["modality"] for i in facts["inputs"].values()} == {"image", "text"}
    assert facts["inputs"]["image"]["unreadable_refs"] == 0


def test_data_prepare_with_options_and_unknown_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    result = runner.invoke(app, ["data", "prepare", "synthetic", "-o", "n=60", "-o", "seed=2"])
    assert result.exit_code == 0, result.output
    assert "rows (train)" in result.output and "42" in result.output  # 70 % of 60
    proc = run_cli("data", "prepare", "mnist-but-typo")
    assert proc.returncode == 2 and "unknown dataset recipe 'mnist-but-typo'" in proc.stderr


def test_fit_without_a_split_column_reports_a_score_and_a_binary_target_its_auroc(tiny_table, tiny_schema, tmp_path):
    """Issue 18: with no split column `fit` printed no score at all, and a binary target printed no AUROC;
    without test rows it prints the validation score."""
    frame = pd.read_csv(tiny_table)
    frame["label"] = frame["label"] % 2  # binary: the audio bit
    frame.to_csv(tiny_table, index=False)
    schema = {**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}}
    config = {"data": {"table": str(tiny_table), "schema": schema}, "model": {"dim": 16},
              "train": {"epochs": 1, "batch_size": 16}, "output": str(tmp_path / "model")}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["fit", str(tmp_path / "fit.yaml")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "test: accuracy=" in text and "auroc=" in text  # the seeded split holds out test rows

    # A split column without test rows: the validation score, said to be the one that chose the epoch.
    frame["split"] = ["train"] * 40 + ["val"] * (len(frame) - 40)
    frame.to_csv(tiny_table, index=False)
    config["data"]["schema"] = {**schema, "split": "split"}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["fit", str(tmp_path / "fit.yaml")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "val: accuracy=" in text and "auroc=" in text and "no test rows" in text
