"""A tower's required preprocessing is merged into the schema's options in one place, before fitting."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.encoders.input_options import merge_input_options
from tessera.errors import SchemaError
from tessera.pipeline import Pipeline
from tessera.schema import Schema


def test_tower_options_are_filled_in():
    merged = merge_input_options("mobilenet_v2", "image", {"resize": "pad"}, where="input 'photo'")
    assert merged == {"resize": "pad", "size": 224, "channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    audio = merge_input_options("speaker", "audio", {"max_seconds": 4}, where="input 'voice'")
    assert audio == {"max_seconds": 4, "sample_rate": 16000, "representation": "waveform", "normalize": "none"}


def test_agreeing_options_pass_and_others_are_untouched():
    same = {"size": 224, "mean": [0.485, 0.456, 0.406000001]}
    assert merge_input_options("mobilenet_v2", "image", same, where="x")["size"] == 224
    assert merge_input_options("image_cnn", "image", {"size": 32}, where="x") == {"size": 32}
    assert merge_input_options(None, "text", {"max_length": 8}, where="x") == {"max_length": 8}


def test_contradicting_option_is_a_clear_error():
    with pytest.raises(SchemaError, match=r"input 'photo': encoder 'mobilenet_v2' needs size: 224 .* sets size: 64"):
        merge_input_options("mobilenet_v2", "image", {"size": 64}, where="input 'photo'")
    with pytest.raises(SchemaError, match="needs sample_rate: 16000"):
        merge_input_options("whisper_encoder", "audio", {"sample_rate": 8000}, where="input 'speech'")


def test_wrong_modality_and_waveform_for_a_mel_encoder():
    with pytest.raises(SchemaError, match="reads image inputs, but the input is audio"):
        merge_input_options("efficientnet_lite0", "audio", {}, where="input 'a'")
    with pytest.raises(SchemaError, match="reads log-mel spectrograms"):
        merge_input_options("audio_cnn", "audio", {"representation": "waveform"}, where="input 'a'")


def test_pipeline_fit_applies_the_schema_encoder_and_the_config_choice(tmp_path):
    from tests.conftest import write_tiny_table

    frame = pd.read_csv(write_tiny_table(tmp_path, n=4))
    schema = Schema.from_dict(
        {"target": "label", "inputs": {"image": {"modality": "image", "encoder": "efficientnet_lite0"}, "audio": "audio"}}
    )
    pipeline = Pipeline.fit(frame, schema, encoders={"audio": "speech_embedding"})
    image, audio = pipeline.preprocessors["image"], pipeline.preprocessors["audio"]
    assert image.size == 224 and image.mean == pytest.approx([127 / 255] * 3)
    assert audio.representation == "waveform" and audio.sample_rate == 16000
    assert Pipeline.fit(frame, schema).preprocessors["audio"].representation == "log_mel"


def test_a_tower_refuses_an_input_prepared_otherwise():
    """A pipeline fitted before the encoder was chosen: the model build says what to do instead."""
    from tessera.model import build_encoder
    from tessera.preprocess.audio import AudioPreprocessor
    from tessera.preprocess.image import ImagePreprocessor

    with pytest.raises(SchemaError, match=r"encoder 'mobilenet_v2' needs its image input prepared with \{'size': 224"):
        build_encoder("mobilenet_v2", ImagePreprocessor(["photo"], size=64), 32, {})
    with pytest.raises(SchemaError, match="name the encoder before the data is prepared"):
        build_encoder("speech_embedding", AudioPreprocessor(["voice"], sample_rate=16000), 32, {})
