"""The rows a model gets most wrong, with their inputs as a person would see them.

Numbers say how often a model fails; looking at the failures says why (a mislabelled
row, a silent clip, a caption that contradicts its image). The media are taken from the
original cells, not the preprocessed tensors, and embedded as data URIs (PNG thumbnails,
16-bit WAV clips cut to a few seconds) so the report and its JSON stand alone.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from tessera.errors import DataError
from tessera.media import is_missing, resolve_media

THUMBNAIL = 160  # pixels, longest side
AUDIO_SECONDS = 5.0
AUDIO_RATE = 16000  # clips are resampled down to this (enough to hear what is going on)
TEXT_CHARS = 2000


def worst_examples(
    pipeline: Any,
    y_true: np.ndarray,
    scores: np.ndarray,
    rows: np.ndarray,
    frame: pd.DataFrame,
    base_dir: str | None,
    k: int = 8,
) -> list[dict[str, Any]]:
    """The ``k`` highest-loss rows (by the task's per-row loss): row number, truth, prediction, loss and every input's cell."""
    target = pipeline.target
    loss = target.per_row_loss(y_true, scores)
    out = []
    for i in np.argsort(-loss, kind="stable")[:k]:
        row = int(rows[i])
        example: dict[str, Any] = {"row": row, "loss": float(loss[i]), **target.describe_row(y_true[i], scores[i])}
        example["inputs"] = [
            cell_media(name, pre, [frame.at[row, c] for c in pre.columns], base_dir)
            for name, pre in pipeline.preprocessors.items()
        ]
        out.append(example)
    return out


def cell_media(name: str, pre: Any, values: list[Any], base_dir: str | None) -> dict[str, Any]:
    """One input of one row for display: ``kind`` is image, audio, text, values, missing or error."""
    modality = pre.modality
    item: dict[str, Any] = {"input": name, "modality": modality}
    if modality in ("numeric", "categorical"):
        return {**item, "kind": "values", "value": {c: _plain(v) for c, v in zip(pre.columns, values)}}
    value = values[0]
    if is_missing(value):
        return {**item, "kind": "missing"}
    try:
        if modality == "image":
            return {**item, "kind": "image", "src": image_uri(_image(resolve_media(value, base_dir), pre))}
        if modality == "video":
            from tessera.preprocess.video import read_frames

            return {**item, "kind": "image", "src": image_uri(read_frames(resolve_media(value, base_dir), 1)[0])}
        if modality == "audio":
            return {**item, "kind": "audio", "src": audio_uri(resolve_media(value, base_dir))}
    except DataError as e:
        return {**item, "kind": "error", "value": str(e)}
    text = str(value)
    return {**item, "kind": "text", "value": text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."}


def _plain(v: Any) -> Any:
    if is_missing(v):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _image(source: Any, pre: Any) -> Any:
    from tessera.preprocess.image import decode_image

    return decode_image(source, max_pixels=int(getattr(pre, "max_pixels", 100_000_000)), draft_size=THUMBNAIL)


def image_uri(img: Any) -> str:
    """A PNG thumbnail as a data URI."""
    img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def audio_uri(source: Any) -> str:
    """The clip's first seconds, mono, at most 16 kHz, as a 16-bit WAV data URI (every browser plays it)."""
    import soundfile as sf

    from tessera.preprocess.audio import decode_audio, resample, to_mono

    wave, sr = decode_audio(source, max_seconds=AUDIO_SECONDS)
    wave = to_mono(wave)
    if sr > AUDIO_RATE:
        wave, sr = resample(wave, sr, AUDIO_RATE), AUDIO_RATE
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave[: int(AUDIO_SECONDS * sr)], -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
