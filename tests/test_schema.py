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


# -- inference a user can trust ------------------------------------------------------------------
def modalities_of(frame: pd.DataFrame, target: str = "y", **kwargs) -> tuple[dict[str, str | None], dict[str, str]]:
    """Column -> inferred modality (None: left out), and the reasons."""
    schema, reasons = infer_schema(frame, target, **kwargs)
    out: dict[str, str | None] = {c: None for c in schema.ignore}
    for spec in schema.inputs.values():
        for c in spec.columns:
            out.setdefault(c, spec.modality)
    return out, reasons


def test_per_row_unique_columns_are_left_out_with_a_note_also_when_shuffled():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "position": rng.permutation(n),  # a shuffled row index: unique, no order, no telling name
        "product_id": rng.choice(np.arange(10_000, 90_000), n, replace=False),  # sparse, but named like an id
        "image_code": [f"ISIC_{i:07d}" for i in rng.permutation(n)],  # a code of letters and digits
        "price": rng.integers(20_000, 900_000, n),  # unique here too, but a magnitude in a wide range
        "weight": rng.normal(size=n),
        "y": rng.integers(0, 2, n),
    })
    mods, reasons = modalities_of(frame)
    assert mods == {"position": None, "product_id": None, "image_code": None, "price": "numeric", "weight": "numeric"}
    assert "row number" in reasons["position"] and "named like an id" in reasons["product_id"]
    assert "unique in every row" in reasons["image_code"]


def test_postal_and_product_codes_are_categories(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    zips = rng.choice(["02134", "02139", "94110", "10001", "60614", "01002"], n)
    pd.DataFrame({
        "zip": zips,
        "sku": rng.choice([1234567, 2345678, 3456789], n),  # a code by name, whatever its digits
        "y": rng.integers(0, 2, n),
    }).to_csv(tmp_path / "t.csv", index=False)
    from tessera.table import read_table

    frame = read_table(tmp_path / "t.csv").frame
    frame["plan"] = rng.choice(["41730", "31245", "88112"], n)  # digits stored as text (Parquet), fixed width
    assert frame["zip"].tolist()[:3] == zips.tolist()[:3]  # leading zeros kept: pandas alone reads 2134
    mods, reasons = modalities_of(frame)
    assert mods == {"zip": "categorical", "sku": "categorical", "plan": "categorical"}
    assert "leading zeros" in reasons["zip"] and "name" in reasons["sku"] and "5 wide" in reasons["plan"]


def test_a_column_that_gives_the_target_away_is_left_out_unless_kept():
    rng = np.random.default_rng(2)
    n = 400
    y = rng.choice(["nv", "mel", "bcc"], n, p=[0.7, 0.2, 0.1])
    frame = pd.DataFrame({
        "diagnosis_text": pd.Series(y).map({"nv": "nevus", "mel": "melanoma", "bcc": "carcinoma"}),  # the label, renamed
        "score": (y == "mel") * 10.0 + rng.normal(0, 0.1, n),  # a number that separates one class only: not perfect
        "age": rng.integers(20, 80, n),
        "y_source": rng.choice(["a", "b"], n),  # named after the target: another label
        "y": y,
    })
    mods, reasons = modalities_of(frame)
    assert mods["diagnosis_text"] is None and "likely target leak" in reasons["diagnosis_text"]
    assert "keep: [diagnosis_text]" in reasons["diagnosis_text"]
    assert mods["y_source"] is None and "named after the target 'y'" in reasons["y_source"]
    assert mods["score"] == "numeric" and mods["age"] == "numeric"
    kept, _ = modalities_of(frame, keep=["diagnosis_text"])
    assert kept["diagnosis_text"] == "categorical"
    with pytest.warns(UserWarning, match="left out: diagnosis_text"):
        from tessera.schema import resolve_schema

        resolve_schema(frame, None, "y")


def write_clip(path, sound: bool) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono") if sound else None
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            from fractions import Fraction

            wave = np.sin(np.linspace(0, 200, 4096, dtype=np.float32))[None]
            for start in range(0, wave.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start : start + 1024]), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))


@pytest.mark.parametrize("sound", [True, False])
def test_a_videos_sound_track_is_proposed_as_an_audio_input(tmp_path, sound):
    for i in range(3):
        write_clip(tmp_path / f"{i}.mp4", sound)
    frame = pd.DataFrame({"clip": [f"{i}.mp4" for i in range(3)], "y": [0, 1, 0]})
    schema, reasons = infer_schema(frame, "y", base_dir=tmp_path)
    specs = {n: (s.modality, s.columns) for n, s in schema.inputs.items()}
    if sound:
        assert specs == {"clip": ("video", ["clip"]), "clip_audio": ("audio", ["clip"])}
        assert "3/3 sampled files have an audio stream" in reasons["clip (audio)"]
        Schema.from_dict(schema.to_dict())  # a valid schema: a video column may feed its sound track
    else:
        assert specs == {"clip": ("video", ["clip"])}


def test_inferred_types_do_not_flip_with_the_tables_size():
    def table(n: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return pd.DataFrame({
            "day": rng.integers(1, 31, n),  # 30 integer values: once numeric at 200 rows, categorical at 20,000
            "rating": rng.integers(1, 6, n),
            "colour": rng.choice([f"shade {i}" for i in range(40)], n),  # 40 short values: once text, then categorical
            "brand": rng.choice([f"brand{i:04d}x" for i in range(3000)], n),  # many values, never unique per row
            "income": rng.integers(20_000, 2_000_000, n),  # unique in 200 rows, not in 20,000
            "row": rng.permutation(n),
            "price": rng.lognormal(3, 1, n),
            "y": rng.integers(0, 2, n),
        })

    small, large = modalities_of(table(200, 0))[0], modalities_of(table(20_000, 1))[0]
    assert small == large
    assert small == {
        "day": "numeric", "rating": "categorical", "colour": "categorical", "brand": "text", "income": "numeric",
        "row": None, "price": "numeric",
    }
