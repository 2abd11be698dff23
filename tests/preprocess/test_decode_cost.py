"""What decoding a media cell would take, read from its header alone, and what a cell is worth decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tessera.errors import DataError
from tessera.preprocess import DecodeCost, create_preprocessor
from tests.serve.payloads import png


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def test_image_cost_is_the_pixels_decoded_after_draft_reduction() -> None:
    pre = create_preprocessor("image", ["x"], size=64)
    assert pre.decode_cost(png(9400, 9400, "RGBA")).pixels == 9400 * 9400
    assert pre.decode_cost(jpeg(4000, 3000)).pixels == 500 * 375  # JPEG draft: 1/8 scale, still >= 64 px a side
    assert pre.decode_cost(jpeg(100, 100)).pixels == 100 * 100
    assert pre.decode_budget() == DecodeCost(pixels=2048 * 2048)
    assert create_preprocessor("image", ["x"], size=512).decode_budget().pixels == 64 * 512 * 512
    assert DecodeCost(pixels=9400 * 9400).over(pre.decode_budget()) == ["pixels"]
    with pytest.raises(DataError, match="not a readable image"):
        pre.decode_cost(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def test_audio_cost_is_the_crop_at_the_files_rate_and_channels() -> None:
    pre = create_preprocessor("audio", ["a"], sample_rate=16000, max_seconds=2.0)
    buf = io.BytesIO()
    sf.write(buf, np.zeros((48000 * 5, 2), np.int16), 48000, format="WAV", subtype="PCM_16")
    cost = pre.decode_cost(buf.getvalue())
    assert cost.seconds == pytest.approx(2.05) and cost.samples == int(2.05 * 48000 * 2)
    assert not cost.over(pre.decode_budget())
    short = io.BytesIO()
    sf.write(short, np.zeros(8000, np.int16), 16000, format="FLAC")
    assert pre.decode_cost(short.getvalue()).seconds == pytest.approx(0.5)
    with pytest.raises(DataError, match="audio header"):
        pre.decode_cost(b"RIFF\0\0\0\0WAVEjunk")


def test_compact_copies_keep_what_the_model_uses() -> None:
    image = create_preprocessor("image", ["x"], size=32)
    assert Image.open(io.BytesIO(image.compact(png(3000, 1000, "RGB")))).size == (256, 85)
    audio = create_preprocessor("audio", ["a"], sample_rate=8000, max_seconds=1.0)
    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 3, 2)).astype(np.float32), 44100, format="WAV")
    data, rate = sf.read(io.BytesIO(audio.compact(buf.getvalue())))
    assert rate == 8000 and data.ndim == 1 and len(data) == 8000
