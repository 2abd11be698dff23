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
