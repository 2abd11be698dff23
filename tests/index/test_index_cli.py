"""`tessera align`, `tessera index build|info|delete` and `tessera search`, end to end on the tiny table."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import yaml
from typer.testing import CliRunner

from tessera.cli import app

runner = CliRunner()


def test_align_index_search_from_the_command_line(tiny_table, tiny_schema, tmp_path) -> None:
    schema = {"inputs": {k: tiny_schema["inputs"][k] for k in ("image", "caption")}}
    config = tmp_path / "align.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"table": str(tiny_table), "schema": schema},
        "model": {"dim": 16, "encoder_dim": 32},
        "train": {"epochs": 25, "batch_size": 16, "lr": 0.003, "device": "cpu"},
        "output": "space",
    }))
    result = runner.invoke(app, ["align", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "space" / "embedder.json").is_file() and "validation Recall@1" in result.output and "chance" in result.output

    index = tmp_path / "index"
    result = runner.invoke(app, ["index", "build", str(tmp_path / "space"), str(tiny_table), "--out", str(index), "--input", "image", "-m", "label", "-m", "color"])
    assert result.exit_code == 0, result.output
    assert "48 rows (48 added" in result.output
    result = runner.invoke(app, ["index", "info", str(index)])
    assert result.exit_code == 0 and "48" in result.output and "label, color, path, thumbnail" in result.output

    out = tmp_path / "hits.json"
    result = runner.invoke(app, ["search", str(index), "--text", "a red square", "-k", "5", "--where", "color != 'y'", "--output", str(out)])
    assert result.exit_code == 0, result.output
    hits = pd.DataFrame(json.loads(out.read_text()))
    assert len(hits) == 5 and set(hits["color"]) <= {"x", "z"}
    assert ((hits["label"] // 2) == 0).mean() >= 0.8  # the rows captioned "a red square" in training

    image = tiny_table.parent / "img" / "3.png"
    result = runner.invoke(app, ["search", str(index), "--image", str(image), "--text", "a red square", "--text-weight", "0.5", "-k", "3"])
    assert result.exit_code == 0 and "score" in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "3 results from" in result.output and "rank" in result.output and "thumbnail" not in result.output
    rows = [line for line in lines if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["1", "2", "3"]  # one line per hit, a table not a dump

    result = runner.invoke(app, ["index", "delete", str(index), "0", "1", "nope"])
    assert result.exit_code == 0 and "deleted 2 row(s)" in result.output


def test_search_errors_are_one_line(tmp_path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tessera.cli", *args], capture_output=True, text=True, timeout=120)

    missing = run("search", str(tmp_path / "nope"), "--text", "x")
    assert missing.returncode == 2 and "no vector index at" in missing.stderr and "Traceback" not in missing.stderr
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": {"table": "t.csv"}, "train": {"epochs": 1, "batch_size": 1}}))
    bad = run("align", str(config))
    assert bad.returncode == 2 and "train.batch_size: must be at least 2: a contrastive batch needs negatives" in bad.stderr
