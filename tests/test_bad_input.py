"""Every bad-input case the user can hit gives an error naming row, column and file (or a skip report)."""

import csv
import warnings

import numpy as np
import pandas as pd
import pytest

from tessera.errors import DataError, SchemaError
from tessera.predictor import Predictor

FAST = {"epochs": 1, "batch_size": 16, "num_workers": 0}


def fit(table, schema, **train):
    return Predictor(model={"dim": 16}, train={**FAST, **train}).fit(table, schema=schema)


def small_schema(tiny_schema, keep):
    tiny_schema["inputs"] = {k: v for k, v in tiny_schema["inputs"].items() if k in keep}
    return tiny_schema


def break_row(tiny_table, column, row, content=None, value=None):
    frame = pd.read_csv(tiny_table)
    if content is not None:
        (tiny_table.parent / frame.at[row, column]).write_bytes(content)
    if value is not None:
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value
        frame.to_csv(tiny_table, index=False)
    return tiny_table.parent / frame.at[row, column] if content is not None else None


@pytest.mark.parametrize(
    "column, content, value, message",
    [
        ("image", None, "img/does_not_exist.png", r"row 5, column 'image', file '.*does_not_exist\.png': file not found"),
        ("image", b"\x89PNG\r\n\x1a\n" + bytes(40), None, r"row 5, column 'image', file '.*5\.png': .*(image|truncated|corrupt)"),
        ("audio", b"RIFF\x00\x00\x00\x00WAVEjunkjunk", None, r"row 5, column 'audio', file '.*5\.wav': .*decode"),
        ("image", None, "https://example.com/cat.png", r"row 5, column 'image'.*URLs are not fetched"),
    ],
)
def test_broken_media_raises_with_row_column_file(tiny_table, tiny_schema, column, content, value, message):
    break_row(tiny_table, column, 5, content, value)
    with pytest.raises(DataError, match=message):
        fit(tiny_table, small_schema(tiny_schema, [column, "numeric"]), max_train_rows=None)


def test_skip_policy_warns_and_writes_report(tiny_table, tiny_schema, tmp_path):
    break_row(tiny_table, "image", 3, content=b"not an image at all")
    break_row(tiny_table, "audio", 7, content=b"")
    report = tmp_path / "skipped.csv"
    with pytest.warns(UserWarning, match=r"skipped 2 row\(s\)"):
        p = Predictor(model={"dim": 16}, train={**FAST, "on_error": "skip"}).fit(
            tiny_table, schema=small_schema(tiny_schema, ["image", "audio"]), skip_report=report
        )
    rows = list(csv.DictReader(open(report)))
    assert {(r["row"], r["column"]) for r in rows} == {("3", "image"), ("7", "audio")}
    assert all(r["file"] and r["reason"] for r in rows)
    assert p.model is not None


def test_unreadable_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))
    frame = pd.DataFrame({"clip": ["clip.mp4"] * 4, "y": [0, 1, 0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    schema = {"target": "y", "inputs": {"clip": {"modality": "video", "options": {"size": 8, "num_frames": 2}}}}
    with pytest.raises(DataError, match=r"row \d, column 'clip', file '.*clip\.mp4'"):
        fit(tmp_path / "t.csv", schema)


def test_missing_values_become_masks_not_errors(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table)
    frame.loc[[1, 2, 3], "image"] = np.nan
    frame.loc[[4], "caption"] = ""
    frame.loc[[5, 6], "price"] = np.nan
    frame.to_csv(tiny_table, index=False)
    p = fit(tiny_table, tiny_schema)
    from tessera.pipeline import cache_split
    from tessera.table import read_table

    split = cache_split(p.pipeline, p.pipeline.dataset(read_table(tiny_table)))
    assert split.inputs["image"].present[:5].tolist() == [True, False, False, False, True]
    assert not split.inputs["caption"].present[4]
    assert split.inputs["numeric"].present[5].item() is False  # the only numeric column is missing
    assert p.predict(tiny_table).shape == (len(frame),)


def test_wrong_type_column(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table)
    frame["price"] = frame["price"].astype(object)
    frame.at[9, "price"] = "cheap"
    frame.to_csv(tiny_table, index=False)
    with pytest.raises(DataError, match=r"row 9, column 'price'.*non-number: 'cheap'"):
        fit(tiny_table, small_schema(tiny_schema, ["numeric"]))


def test_empty_table(tmp_path, tiny_schema):
    (tmp_path / "t.csv").write_text("image,audio,caption,price,color,label\n")
    with pytest.raises(DataError, match="no rows"):
        fit(tmp_path / "t.csv", tiny_schema)


def test_label_with_one_class(tiny_table, tiny_schema):
    frame = pd.read_csv(tiny_table)
    frame["label"] = 3
    frame.to_csv(tiny_table, index=False)
    with pytest.raises(DataError, match=r"column 'label': the target has 1 class \(3\).*at least two"):
        fit(tiny_table, small_schema(tiny_schema, ["numeric"]))


def test_schema_naming_absent_column(tiny_table, tiny_schema):
    tiny_schema["inputs"]["photo"] = {"modality": "image", "column": "photo_path"}
    with pytest.raises(SchemaError, match=r"'photo_path' \(input 'photo'\)"):
        fit(tiny_table, tiny_schema)


def test_unseen_label_at_evaluation(tiny_table, tiny_schema):
    p = fit(tiny_table, small_schema(tiny_schema, ["numeric"]))
    frame = pd.read_csv(tiny_table)
    frame.at[2, "label"] = 99
    with pytest.raises(DataError, match=r"row 2, column 'label': label 99 was not seen in training"):
        p.evaluate(frame)


def test_skipped_rows_are_one_plain_line_on_the_command_line(tiny_table, tiny_schema, tmp_path):
    """Issue 18: `on_error: skip` printed a raw Python warning (source path, line number, UserWarning)."""
    import subprocess
    import sys

    import yaml

    break_row(tiny_table, "image", 5, value="img/does_not_exist.png")
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"table": str(tiny_table), "schema": small_schema(tiny_schema, ["image", "numeric"])},
        "model": {"dim": 16}, "train": {**FAST, "on_error": "skip"}, "output": str(tmp_path / "model"),
    }))
    result = subprocess.run(  # in tmp_path: the skip report lands in the working directory
        [sys.executable, "-m", "tessera.cli", "fit", str(config)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "warning: skipped 1 row(s) with unusable data (first: row 5, column 'image'" in " ".join(result.stderr.split())
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr
    assert (tmp_path / "tessera-skipped-rows.csv").is_file()
