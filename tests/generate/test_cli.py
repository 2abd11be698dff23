"""`tessera generate`: fit from a config file, run a saved generator on an image (streamed), evaluate, errors."""

from __future__ import annotations

import sys

import pytest
import yaml
from typer.testing import CliRunner

from tessera import zoo
from tessera.cli import app, main

from .conftest import CAPTIONS, PROMPT

runner = CliRunner()


def test_fit_from_a_config_then_caption_an_image(caption_table, tmp_path):
    frame, folder = caption_table
    frame.to_csv(folder / "rows.csv", index=False)
    config = {
        "data": {"table": str(folder / "rows.csv"), "input": "photo", "text": "caption", "options": {"size": 16}},
        "encoder": {"name": "image_cnn", "options": {"dim": 32, "width": 8}, "trainable": True},
        "projector": {"kind": "mlp", "options": {"tokens": 2}},
        "lm": {"scratch": {"hidden": 32, "layers": 1, "heads": 2, "vocab_size": 300}},
        "train": {"epochs": 2, "batch_size": 4},
        "output": "runs/captioner",  # relative to the config file
    }
    path = tmp_path / "caption.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["generate", "fit", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "captioner" / "generator.json").is_file() and "epoch=2" in result.output


def test_a_saved_generator_describes_an_image_on_the_command_line(saved_captioner, caption_table):
    model, _ = saved_captioner
    _, folder = caption_table
    result = runner.invoke(app, ["generate", str(model), "--image", str(folder / "blue0.png"), "--prompt", PROMPT])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == CAPTIONS["blue"]


def test_num_beams_on_the_command_line(saved_captioner, caption_table, tiny_llama):
    model, _ = saved_captioner
    _, folder = caption_table
    image = str(folder / "blue0.png")
    result = runner.invoke(app, ["generate", str(model), "--image", image, "--prompt", PROMPT, "--num-beams", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == CAPTIONS["blue"]
    text_only = runner.invoke(
        app, ["generate", str(tiny_llama), "--prompt", "a", "--num-beams", "2", "--max-new-tokens", "4"]
    )
    assert text_only.exit_code == 0, text_only.output


def test_generate_evaluate_writes_a_report(saved_captioner, tmp_path):
    model, table = saved_captioner
    result = runner.invoke(app, ["generate", "evaluate", str(model), str(table), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "cider:" in result.output and (tmp_path / "r.html").is_file()


def test_wrong_inputs_are_one_line_errors(saved_captioner, caption_table, tmp_path, monkeypatch, capsys):
    model, _ = saved_captioner
    _, folder = caption_table
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    cases = [
        (["generate", str(model), "--audio", str(wav)], "reads image: give --image FILE, not --audio"),
        (["generate", str(model), "--image", str(tmp_path / "nope.png")], "--image: no such file"),
        (["generate", str(tmp_path), "--image", str(folder / "red0.png")], "not a saved generator folder"),
        (["generate", "whisper-tiny.en", "--image", str(folder / "red0.png")], "give --audio FILE"),
        (["generate", "fit", str(tmp_path / "missing.yaml")], "config file not found"),
        (["generate", str(model), "--image", str(folder / "red0.png"), "--num-beams", "0"], "must be >= 1"),
        (["generate", str(model), "--image", str(folder / "red0.png"), "--num-beams", "2", "--sample"], "drop --sample"),
    ]
    for args, message in cases:  # the real entry point: Tessera errors become one line and exit code 2
        monkeypatch.setattr(sys, "argv", ["tessera", *args])
        with pytest.raises(SystemExit) as done:
            main()
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in " ".join(err.split()), (args, err)


@pytest.mark.realdata
def test_packaged_whisper_transcribes_a_clip(shared_data):
    if not zoo.is_installed("transcribe"):
        pytest.skip("the packaged Whisper tiny.en is not installed (pip install 'tessera[zoo]')")
    clip = shared_data / "fsdd" / "recordings" / "7_george_0.wav"
    result = runner.invoke(app, ["generate", "whisper-tiny.en", "--audio", str(clip)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().lower().strip(".!") in ("seven", "7")


def test_a_config_says_which_generator_it_trains(tmp_path):
    from tessera.errors import SchemaError
    from tessera.generate_cli import config_task

    cases = {
        "caption.yaml": ({"data": {"input": "photo"}, "lm": {"scratch": {}}}, "text"),
        "explicit.yaml": ({"task": "text", "data": {}}, "text"),
        "image.yaml": ({"task": "text2image", "data": {}}, "text2image"),
        "legacy.yaml": ({"data": {"dataset": "mnist"}, "text_encoder": "x"}, "text2image"),
        "speech.yaml": ({"task": "text2speech"}, "text2speech"),
    }
    for name, (raw, task) in cases.items():
        (tmp_path / name).write_text(yaml.safe_dump(raw))
        assert config_task(tmp_path / name) == task, name
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"task": "video"}))
    with pytest.raises(SchemaError, match="task must be text, text2image or text2speech"):
        config_task(tmp_path / "bad.yaml")
