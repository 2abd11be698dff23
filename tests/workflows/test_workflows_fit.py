"""`tessera fit`'s workflow: the config names the runner, the caller supplies its code."""

from __future__ import annotations

import pytest

from tessera.config import parse_fit_config
from tessera.errors import TesseraError
from tessera.predictor import Predictor
from tessera.workflows.fit import local_fit, run_fit


def test_run_fit_trains_with_the_function_it_is_given(tiny_table, tiny_schema, tmp_path):
    schema = {**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}}
    raw = {"data": {"table": str(tiny_table), "schema": schema}, "model": {"dim": 8}, "train": {"epochs": 1}, "output": "m"}
    calls = []

    def runner(predictor, table, schema, *, target=None):
        calls.append((table, target))
        return local_fit(predictor, table, schema, target=target)

    predictor, out = run_fit(parse_fit_config({**raw, "runner": "ray"}, base_dir=tmp_path), fit=runner)
    assert calls == [(tiny_table, None)] and out == tmp_path / "m"
    assert Predictor.load(out).model is not None and set(predictor.metrics) == {"test"}  # the seeded split holds out test rows
    with pytest.raises(TesseraError, match="runner 'ray': run it with `tessera fit`, or pass that runner's fit function"):
        run_fit(parse_fit_config({**raw, "runner": "ray"}, base_dir=tmp_path))


def test_fit_killed_mid_run_continues_with_resume_to_the_same_model(tiny_table, tiny_schema, tmp_path, monkeypatch):
    """`tessera fit CONFIG` checkpoints into its output; `--resume` finishes as an uninterrupted run would."""
    import torch
    import yaml
    from typer.testing import CliRunner

    import tessera.predictor
    from tessera.cli import app

    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in ("numeric", "categorical")}}
    config = {"data": {"table": str(tiny_table), "schema": schema}, "model": {"dim": 8, "modality_dropout": 0.2},
              "train": {"epochs": 4, "batch_size": 16, "patience": 0, "threads": 1}, "output": "model"}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    assert runner.invoke(app, ["fit", str(path), "--output", str(tmp_path / "full")]).exit_code == 0

    real_train = tessera.predictor.train

    def killed_after_epoch_2(*args, on_epoch_end=None, **kwargs):
        def hook(state):
            on_epoch_end(state)
            if state["epoch"] == 2:
                raise KeyboardInterrupt  # as if killed right after the epoch's checkpoint
        return real_train(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(tessera.predictor, "train", killed_after_epoch_2)
    result = runner.invoke(app, ["fit", str(path), "--output", str(tmp_path / "killed")])
    assert result.exit_code == 130  # click turns the interrupt into "Aborted!"
    assert (tmp_path / "killed" / "train_state.pt").is_file()
    assert len(Predictor.load(tmp_path / "killed").result.history) <= 2  # the best model so far is loadable
    monkeypatch.setattr(tessera.predictor, "train", real_train)

    result = runner.invoke(app, ["fit", str(path), "--resume", "--output", str(tmp_path / "killed")])
    assert result.exit_code == 0, result.output
    full, resumed = Predictor.load(tmp_path / "full"), Predictor.load(tmp_path / "killed")
    assert [h["train_loss"] for h in resumed.result.history] == [h["train_loss"] for h in full.result.history]
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert not (tmp_path / "killed" / "train_state.pt").exists()
    again = runner.invoke(app, ["fit", str(path), "--resume", "--output", str(tmp_path / "killed")])
    assert again.exit_code != 0 and "nothing to resume" in str(again.exception)


def test_preset_best_refuses_to_resume_and_saves_its_ensemble_over_a_checkpoint_dir(tiny_table, tiny_schema, tmp_path):
    """Best keeps no training state, so --resume is refused in one line; its ensemble is saved even where its
    networks checkpoint into the output folder (where a single network's final checkpoint is the saved model)."""
    import yaml
    from typer.testing import CliRunner

    from tessera.cli import app

    config = {"data": {"table": str(tiny_table), "schema": tiny_schema}, "model": {"dim": 8}, "preset": "best",
              "train": {"epochs": 1, "batch_size": 16, "num_workers": 0, "threads": 1}, "output": str(tmp_path / "best"),
              "exclude": ["towers", "linear", "gbm", "unimodal networks", "features networks"]}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    refused = CliRunner().invoke(app, ["fit", str(tmp_path / "fit.yaml"), "--resume"])
    assert refused.exit_code != 0 and "preset 'best' cannot resume" in str(refused.exception)
    assert not (tmp_path / "best").exists()

    cfg = parse_fit_config({**config, "train": {**config["train"], "checkpoint_dir": str(tmp_path / "best")}}, base_dir=tmp_path)
    predictor, out = run_fit(cfg)
    assert predictor.ensemble is not None and (out / "ensemble.json").is_file()
    assert Predictor.load(out).ensemble is not None and not (out / "train_state.pt").exists()
