"""Every config is read one way: unknown keys and wrong types fail early, naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tessera.align.config import load_align_config
from tessera.config import load_fit_config
from tessera.errors import SchemaError
from tessera.model import ModelConfig
from tessera.predictor import InferenceConfig
from tessera.serve.app import ServeConfig
from tessera.train import TrainConfig


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"train": {"epochs": "three"}}, r"run.yaml: train.epochs: Input should be a valid integer \(got 'three'\)"),
        ({"train": {"lr": "1e-3"}}, r"run.yaml: train.lr: Input should be a valid number \(got '1e-3'\)"),  # YAML 1.1 reads 1e-3 as text
        ({"train": {"epoch": 3}}, r"run.yaml: train: unknown key\(s\) \['epoch'\]; known: \['batch_size', "),
        ({"model": {"dim": 12.5}}, r"run.yaml: model.dim: Input should be a valid integer"),
        ({"model": {"aux_weight": -1}}, r"run.yaml: model.aux_weight: Input should be greater than or equal to 0"),
        ({"workers": True}, r"run.yaml: workers: Input should be a valid integer \(got True\)"),  # a flag is not a count
        ({"runner": "spark"}, r"run.yaml: runner must be one of \['local', 'ray'\], got 'spark'"),
        ({"outputs": "x"}, r"run.yaml: unknown key\(s\) \['outputs'\]; known: \["),
        ({"data": {"table": "t.csv", "targt": "y"}}, r"run.yaml: data: unknown key\(s\) \['targt'\]; allowed: keep, recipe, "),
    ],
)
def test_fit_config_errors_name_the_file_and_the_field(tmp_path, section, message):
    with pytest.raises(SchemaError, match=message):
        load_fit_config(write(tmp_path, {"data": {"table": "t.csv"}, **section}))


def test_a_valid_fit_config_resolves_paths_against_its_folder(tmp_path):
    cfg = load_fit_config(write(tmp_path, {
        "data": {"table": "t.csv"}, "model": {"dim": 8, "aux_weight": 1}, "train": {"epochs": 2, "checkpoint_dir": "ckpt"},
        "output": "out",
    }))
    assert cfg.output == tmp_path / "out" and cfg.train.checkpoint_dir == str(tmp_path / "ckpt")
    assert cfg.model.aux_weight == 1.0 and cfg.train.epochs == 2 and cfg.base_dir == tmp_path


def test_align_config_errors_name_the_file_and_the_field(tmp_path):
    base = {"data": {"table": "t.csv"}}
    with pytest.raises(SchemaError, match=r"run.yaml: model: unknown key\(s\) \['dims'\]; known: \['anchor', "):
        load_align_config(write(tmp_path, {**base, "model": {"dims": 8}}))
    with pytest.raises(SchemaError, match=r"run.yaml: train.queue_size: Input should be greater than or equal to 0"):
        load_align_config(write(tmp_path, {**base, "train": {"queue_size": -1}}))
    cfg = load_align_config(write(tmp_path, {**base, "model": {"dim": 8}}))
    assert cfg.model.build_kwargs() == {"dim": 8}  # only what the file gives reaches build_align_model


def test_settings_built_in_code_fail_the_same_way():
    with pytest.raises(SchemaError, match=r"config: train.gradient_modulation: Input should be 'none' or 'ogm_ge'"):
        TrainConfig(gradient_modulation="ogm")
    with pytest.raises(SchemaError, match=r"config: inference.on_error: Input should be 'raise' or 'skip'"):
        InferenceConfig(on_error="ignore")
    with pytest.raises(SchemaError, match=r"config: serve.max_batch: Input should be a valid integer"):
        ServeConfig(keys_file="keys.json", max_batch="32")
    assert ServeConfig(keys_file="keys.json").keys_file == Path("keys.json")  # paths may be written as text
    assert ModelConfig.from_dict(ModelConfig(dim=4).to_dict()) == ModelConfig(dim=4)
