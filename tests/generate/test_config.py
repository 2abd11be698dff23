"""Generator configs: defaults, and a clear SchemaError for each kind of mistake."""

from __future__ import annotations

import pytest

from tessera.errors import SchemaError
from tessera.generate.config import GenerateConfig

DATA = {"input": "photo", "text": "caption"}


def test_defaults_and_round_trip():
    cfg = GenerateConfig.from_dict({"data": DATA})
    assert cfg.lm.scratch is not None and cfg.projector.kind == "mlp" and cfg.lora is None
    again = GenerateConfig.from_dict(
        {"data": DATA, "lm": {"source": "gguf:gemma3-270m"}, "lora": {"r": 4}, "train": {"lora_epochs": 1}}
    )
    assert GenerateConfig.from_dict(again.to_dict()) == again


@pytest.mark.parametrize(
    "raw, match",
    [
        ([1, 2], "expected a mapping"),
        ({"data": DATA, "model": {}}, r"unknown section\(s\) \['model'\]"),
        ({"data": {"input": "photo"}}, "data.text: name a column"),
        ({"data": DATA | {"modality": "smell"}}, "data.modality: one of"),
        ({"data": DATA, "encoder": {"nmae": "x"}}, r"encoder: unknown key\(s\) \['nmae'\]"),
        ({"data": DATA, "projector": {"kind": "qformer"}}, "projector.kind: one of"),
        ({"data": DATA, "lm": {}}, "exactly one of 'source'"),
        ({"data": DATA, "lm": {"source": "x", "scratch": {}}}, "exactly one of 'source'"),
        ({"data": DATA, "lm": {"scratch": {"hidden": 30, "heads": 4}}}, "divisible by heads"),
        ({"data": DATA, "lm": {"scratch": {"layers": 0}}}, r"lm.scratch.layers: an integer >= 1"),
        ({"data": DATA, "chat": "chatml"}, "chat: one of"),
        ({"data": DATA, "lora": {"r": 4}, "train": {"lora_epochs": 1}}, "LoRA adapts a pretrained LM"),
        ({"data": DATA, "lm": {"source": "x"}, "lora": {"r": 4}}, "give lora_epochs >= 1"),
        (
            {"data": DATA, "lm": {"source": "x"}, "lora": {"r": 0}, "train": {"lora_epochs": 1}},
            "lora.r: a positive integer",
        ),
        ({"data": DATA, "train": {"lr": -1}}, "train.lr: a positive number"),
        ({"data": DATA, "train": {"batch_size": "8"}}, "train.batch_size: an integer"),
        ({"data": DATA, "train": {"epoch": 3}}, r"train: unknown key\(s\) \['epoch'\]"),
    ],
)
def test_bad_config(raw, match):
    with pytest.raises(SchemaError, match=match):
        GenerateConfig.from_dict(raw)


def test_config_files_place_the_table_and_output_beside_them(tmp_path):
    from tessera.generate.config import load_config

    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("data: {table: rows.csv, input: photo, text: caption}\noutput: ../runs/x\n")
    cfg, output = load_config(path)
    assert cfg.data.table == str(tmp_path / "sub" / "rows.csv") and output == tmp_path / "sub" / "../runs/x"
    path.write_text("data: {table: a.csv, recipe: fsdd, input: audio, text: transcript}\n")
    with pytest.raises(SchemaError, match=r"c.yaml: generate config: data: give 'table' or 'recipe', not both"):
        load_config(path)


@pytest.mark.parametrize("name", ["asr_fsdd", "caption_flickr", "caption_flickr_scratch"])
def test_example_configs_parse(name):
    from pathlib import Path

    from tessera.generate.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "generate" / f"{name}.yaml"
    cfg, output = load_config(path)
    assert cfg.data.recipe in ("fsdd", "flickr8k") and output is not None and output.name == name
