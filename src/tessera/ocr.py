"""Text read from images offline: PaddleOCR's PP-OCRv4 models through RapidOCR (ONNX Runtime).

``rapidocr-onnxruntime`` ships the detector, the text-direction classifier and the
recogniser (Apache-2.0) inside its wheel, so nothing is downloaded. Used to derive a text
input from an image column (signs, labels, screenshots, product packaging).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from tessera import zoo

if TYPE_CHECKING:
    from rapidocr_onnxruntime import RapidOCR

ImageLike = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


@functools.lru_cache(maxsize=4)
def load_ocr(threads: int = 1) -> RapidOCR:
    """The packaged detector + recogniser, loaded once per thread count."""
    zoo.require("ocr")
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)


def read_text(image: ImageLike, *, min_score: float = 0.5, threads: int = 1) -> str:
    """The text in ``image`` (a path, encoded bytes, an RGB array or a PIL image), lines in
    reading order (top to bottom) joined by spaces; ``""`` when it finds none.

    Lines whose recognition confidence is below ``min_score`` are left out.
    """
    source: Any = image
    if isinstance(image, Image.Image):
        source = np.asarray(image.convert("RGB"))[:, :, ::-1]  # RapidOCR's arrays are OpenCV's BGR
    elif isinstance(image, os.PathLike):
        source = str(Path(image))
    result, _ = load_ocr(threads)(source, text_score=min_score)
    return " ".join(line[1] for line in result or [] if float(line[2]) >= min_score).strip()
