"""The main job (`tessera` with no command) runs end to end, saves its model and report, and falls back to the synthetic set."""

from typer.testing import CliRunner

from tessera.cli import app
from tessera.predictor import Predictor


def test_main_job_falls_back_to_synthetic_saves_and_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "empty-home"))  # no AV-MNIST sources here
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "job"
    result = CliRunner().invoke(app, ["--epochs", "1", "--max-train-rows", "300", "--threads", "1", "--output", str(out)])
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
