"""The main job (`tessera` with no command) runs end to end, and falls back to the synthetic set."""

from typer.testing import CliRunner

from tessera.cli import app


def test_main_job_falls_back_to_synthetic_and_prints_results(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "empty-home"))  # no AV-MNIST sources here
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["--epochs", "1", "--no-baselines", "--no-towers"])  # towers: tests/test_proposal.py
    assert result.exit_code == 0, result.output
    assert "AV-MNIST is not available" in result.output and "synthetic" in result.output
    assert "Tessera main job: synthetic, test split" in result.output
    assert "fusion (concat)" in result.output
