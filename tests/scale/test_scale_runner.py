"""Choosing the runner (configs, flags) and how Ray failures of our own errors reach the user."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from tessera.cli import app
from tessera.config import check_runner, parse_fit_config
from tessera.errors import DataError, SchemaError, TesseraError
from tessera.scale.runner import tessera_errors

DATA = {"data": {"table": "t.csv"}}


def test_fit_config_runner_keys_are_validated() -> None:
    cfg = parse_fit_config({**DATA, "runner": "ray", "address": "auto", "workers": 4})
    assert (cfg.runner, cfg.address, cfg.workers) == ("ray", "auto", 4)
    assert parse_fit_config(DATA).runner == "local"
    with pytest.raises(SchemaError, match=r"config: runner must be one of \['local', 'ray'\], got 'spark'"):
        parse_fit_config({**DATA, "runner": "spark"})
    with pytest.raises(SchemaError, match="is for the Ray runner; add runner: ray"):
        parse_fit_config({**DATA, "address": "auto"})
    with pytest.raises(SchemaError, match=r"config: workers: Input should be greater than or equal to 1 \(got 0\)"):
        parse_fit_config({**DATA, "runner": "ray", "workers": 0})
    with pytest.raises(SchemaError, match="Ray address must be"):
        check_runner("ray", "localhost")
    assert cfg.with_runner("local", None).runner == "local" and cfg.with_runner(None, None).address == "auto"


def test_ray_predict_needs_a_parquet_output_and_a_known_runner(tmp_path) -> None:
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "t.csv", "--runner", "ray"])
    assert isinstance(result.exception, TesseraError) and "add --output FILE.parquet" in str(result.exception)
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "t.csv", "--runner", "spark"])
    assert isinstance(result.exception, SchemaError) and "runner must be one of" in str(result.exception)


def test_a_data_error_raised_in_a_ray_task_arrives_as_itself(ray_cluster) -> None:
    @ray_cluster.remote
    def fails() -> None:
        raise DataError("not a readable image", row=12, column="image", file="a.png")

    with pytest.raises(DataError) as info, tessera_errors():
        ray_cluster.get(fails.remote())
    assert type(info.value) is DataError
    assert str(info.value) == "row 12, column 'image', file 'a.png': not a readable image"


@pytest.mark.slow
def test_fit_predict_and_index_build_with_runner_ray(ray_cluster, tiny_table, tiny_schema, tmp_path, embedder) -> None:
    runner = CliRunner()
    schema = {"target": "label", "inputs": {k: tiny_schema["inputs"][k] for k in ("numeric", "categorical")}}
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"table": str(tiny_table), "schema": schema},
        "model": {"dim": 8}, "train": {"epochs": 1, "batch_size": 16, "num_workers": 0},
        "output": "model", "runner": "ray", "workers": 2,
    }))
    result = runner.invoke(app, ["fit", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model.pt").is_file()

    out = tmp_path / "pred.parquet"
    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(tiny_table), "--runner", "ray", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 48 predictions" in result.output

    embedder.save(tmp_path / "space")
    result = runner.invoke(app, ["index", "build", str(tmp_path / "space"), str(tiny_table), "--out", str(tmp_path / "index"),
                                 "--input", "image", "--runner", "ray"])
    assert result.exit_code == 0, result.output
    assert "48 rows (48 added" in result.output
