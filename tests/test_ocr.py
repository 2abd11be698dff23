"""RapidOCR (PP-OCRv4, packaged ONNX models) reads text from an image offline."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from tessera import zoo


@pytest.fixture(scope="module")
def read_text():
    if not zoo.is_installed("ocr"):
        pytest.skip(zoo.CATALOG["ocr"].install)
    from tessera.ocr import read_text

    return read_text


def test_reads_rendered_text_from_an_image_and_a_file(read_text, tmp_path):
    img = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(img).text((20, 30), "OPEN 24 HOURS", fill="black", font=ImageFont.load_default(size=36))
    # PP-OCRv4's recogniser often drops the spaces between English words.
    assert read_text(img).replace(" ", "") == "OPEN24HOURS"
    img.save(tmp_path / "sign.png")
    assert read_text(tmp_path / "sign.png").replace(" ", "") == "OPEN24HOURS"


def test_blank_image_has_no_text(read_text):
    assert read_text(Image.new("RGB", (64, 64), "white")) == ""
