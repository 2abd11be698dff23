"""Derived text inputs: `{modality: text, from: COLUMN, via: transcribe|ocr}` checked in the schema and
at fit time, and a transcript of FSDD recordings feeding a text tower end to end."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera import zoo
from tessera.errors import SchemaError
from tessera.features import FeatureStore
from tessera.pipeline import Pipeline
from tessera.predictor import Predictor
from tessera.schema import Schema
from tessera.table import read_table
from tests.conftest import write_tiny_table


def schema_with(spec: dict) -> dict:
    return {"target": "label", "inputs": {"audio": {"modality": "audio"}, "said": spec}}


def test_a_derived_input_round_trips_through_the_schema():
    schema = Schema.from_dict(schema_with({"modality": "text", "from": "audio", "via": "transcribe"}))
    said = schema.inputs["said"]
    assert said.columns == ["audio"] and said.via == "transcribe"
    assert schema.to_dict()["inputs"]["said"] == {"modality": "text", "from": "audio", "via": "transcribe"}
    assert Schema.from_dict(schema.to_dict()).inputs["said"] == said


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"modality": "text", "from": "audio", "via": "translate"}, "unknown via 'translate'; known: transcribe"),
        ({"modality": "image", "from": "audio", "via": "transcribe"}, "a derived input has modality: text, not image"),
        ({"modality": "text", "from": "audio"}, "needs both 'from'"),
        ({"modality": "text", "column": "audio", "via": "ocr"}, "needs both 'from'"),
        ({"modality": "text", "column": "audio", "from": "audio", "via": "ocr"}, "give one of 'column', 'columns' or 'from'"),
    ],
)
def test_schema_errors_name_the_input_and_what_is_allowed(spec, message):
    with pytest.raises(SchemaError, match="input 'said'") as err:
        Schema.from_dict(schema_with(spec))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "source, via, holds",
    [("image", "transcribe", "holds image"), ("audio", "ocr", "holds audio"), ("caption", "transcribe", "holds no media files")],
)
def test_a_source_column_of_the_wrong_modality_is_refused_before_any_model_runs(tmp_path, source, via, holds):
    table = read_table(write_tiny_table(tmp_path / "t", n=6))
    schema = Schema.from_dict({"target": "label", "inputs": {"derived": {"modality": "text", "from": source, "via": via}}})
    with pytest.raises(SchemaError) as err:
        Pipeline.fit(table.frame, schema, base_dir=table.base_dir)
    message = str(err.value)
    assert "input 'derived'" in message and f"column '{source}' {holds}" in message and f"via {via}" in message


@pytest.mark.realdata
@pytest.mark.slow
def test_a_transcript_feeds_a_text_tower_end_to_end(shared_data, minilm, tmp_path):
    """Twelve FSDD recordings (digits 0-2, one speaker) become text through Whisper tiny.en, MiniLM embeds the text
    (frozen, its features cached), a head learns the digit; predicting on other takes gives the digit."""
    if zoo.missing_packages("transcribe"):
        pytest.skip(f"Whisper tiny.en not installed ({zoo.tower_info('transcribe').install})")
    meta = pd.read_csv(shared_data / "fsdd" / "metadata.csv")
    meta = meta[meta["digit"].isin([0, 1, 2]) & (meta["speaker"] == "lucas")]  # Whisper hears him best
    rows = meta.groupby("digit").head(4)
    frame = pd.DataFrame({
        "recording": [str(shared_data / "fsdd" / f) for f in rows["file"]],
        "digit": rows["digit"].map({0: "zero", 1: "one", 2: "two"}).to_numpy(),
        "split": (["train"] * 3 + ["test"]) * 3,
    })
    schema = {
        "target": "digit", "split": "split",
        "inputs": {"said": {"modality": "text", "from": "recording", "via": "transcribe",
                            "options": {"tokenizer": "pretrained", "pretrained": minilm, "max_length": 16}}},
    }
    cache = tmp_path / "cache"
    model = {"dim": 16, "encoders": {"said": {"name": "sentence_transformer", "options": {"model": minilm}}}}
    predictor = Predictor(model=model, train={"epochs": 40, "batch_size": 4, "lr": 0.01, "patience": 0, "device": "cpu",
                                              "cache_dir": str(cache)})
    predictor.fit(frame, schema, skip_report=tmp_path / "skipped.csv")
    # Every recording transcribed once and kept; MiniLM's features of the transcripts kept beside them
    # (a recording Whisper hears nothing in has an empty transcript: a missing text, with no features).
    (transcripts,) = cache.glob("transcribe-*.sqlite")
    said = [row[0].decode() for row in FeatureStore(transcripts, {})._db().execute("SELECT data FROM rows")]
    assert len(said) == len(frame) and sum(t.strip(" .").lower() in ("zero", "0", "one", "1") for t in said) >= 6
    (features,) = cache.glob("sentence_transformer-*.sqlite")
    assert len(FeatureStore(features, {})) == sum(bool(t) for t in said)
    test = frame[frame["split"] == "test"]
    predicted = predictor.predict(test.drop(columns=["digit"]))
    assert (predicted.to_numpy() == test["digit"].to_numpy()).mean() >= 2 / 3
    # The saved model derives the text itself: no cache needed to predict.
    loaded = Predictor.load(predictor.save(tmp_path / "model"))
    assert loaded.pipeline.preprocessors["said"].via == "transcribe"
    pd.testing.assert_series_equal(loaded.predict(test.drop(columns=["digit"])), predicted)
