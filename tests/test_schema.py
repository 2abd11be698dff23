import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tessera.errors import DataError, SchemaError
from tessera.schema import Schema, infer_schema, sniff_modality


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


def test_infers_every_modality_with_reasons(tiny_table):
    frame = pd.read_csv(tiny_table)
    frame["series"] = [json.dumps([float(i), 1.0, 2.0]) for i in range(len(frame))]
    frame["clip"] = [f"v/{i}.mp4" for i in range(len(frame))]
    frame["row_id"] = np.arange(len(frame)) + 1000
    schema, reasons = infer_schema(frame, base_dir=tiny_table.parent)
    mods = {name: spec.modality for name, spec in schema.inputs.items()}
    assert mods == {
        "image": "image", "audio": "audio", "caption": "text", "series": "timeseries", "clip": "video",
        "numeric": "numeric", "categorical": "categorical",
    }
    assert schema.target == ["label"] and schema.task == "multiclass"  # found by its name
    assert schema.inputs["numeric"].columns == ["price"]
    assert schema.inputs["categorical"].columns == ["color"]
    assert "image files" in reasons["image"]


def test_sniffs_bytes_and_hf_records_and_extensionless_files(tmp_path):
    data = png_bytes()
    (tmp_path / "noext").write_bytes(data)
    frame = pd.DataFrame({
        "raw": [data] * 6,
        "record": [{"bytes": data, "path": None}] * 6,
        "plain": ["noext"] * 6,
        "y": [0, 1] * 3,
    })
    schema, _ = infer_schema(frame, "y", base_dir=tmp_path)
    assert {n: s.modality for n, s in schema.inputs.items()} == {"raw": "image", "record": "image", "plain": "image"}
    assert sniff_modality(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio"
    assert sniff_modality(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2avc1mp41") == "video"  # an MP4's ftyp box
    assert sniff_modality(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isommp42") == "audio"  # MP4 audio
    assert sniff_modality(b"%PDF-1.7 ...") is None  # known content, but not media
    assert sniff_modality(b"hello") is None


def test_regression_task_and_overrides():
    frame = pd.DataFrame({"x": np.linspace(0, 1, 100), "note": ["abc"] * 100, "price": np.random.default_rng(0).normal(size=100)})
    schema, reasons = infer_schema(frame, "price", overrides={"note": "text", "x": "ignore"})
    assert schema.task == "regression"
    assert schema.inputs["note"].modality == "text" and reasons["note"] == "set by the user"
    assert "x" in schema.ignore


def test_yaml_round_trip(tmp_path, tiny_schema):
    schema = Schema.from_dict(tiny_schema)
    path = schema.save(tmp_path / "schema.yaml")
    again = Schema.load(path)
    assert again.to_dict() == schema.to_dict()
    assert again.inputs["audio"].options["n_mels"] == 16


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"inputs": {"a": {"modality": "smell"}}}, "modality must be one of"),
        ({"inputs": {"a": {"modality": "text", "colour": 1}}}, r"unknown key\(s\) \['colour'\]"),
        ({"inputs": {}}, "'inputs' must map"),
        ({"inputs": {"a": "text"}, "task": "ranking"}, "task must be one of"),
        ({"inputs": {"a": "text"}, "target": "a"}, "target column 'a' is also an input"),
        ({"inputs": {"a": {"modality": "image", "columns": ["x", "y"]}}}, "only numeric and categorical"),
    ],
)
def test_schema_errors_are_clear(bad, message):
    with pytest.raises(SchemaError, match=message):
        Schema.from_dict(bad)


def test_validate_names_absent_column_and_wrong_types():
    schema = Schema.from_dict({"target": "y", "inputs": {"photo": "image", "n": {"modality": "numeric", "columns": ["n"]}}})
    with pytest.raises(SchemaError, match=r"'photo' \(input 'photo'\).*columns are"):
        schema.validate(pd.DataFrame({"n": [1.0], "y": [1]}))
    with pytest.raises(DataError, match=r"row 1, column 'n': a numeric column holds a non-number: 'lots'"):
        schema.validate(pd.DataFrame({"photo": ["a.png", "b.png"], "n": ["1", "lots"], "y": [0, 1]}))
    with pytest.raises(DataError, match=r"row 0, column 'photo': a image column must hold file paths or bytes, found float"):
        schema.validate(pd.DataFrame({"photo": [1.5], "n": [1.0], "y": [0]}))
    with pytest.raises(DataError, match="no rows"):
        schema.validate(pd.DataFrame({"photo": [], "n": [], "y": []}))
