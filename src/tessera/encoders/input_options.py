"""The one place where a schema input's preprocessing options meet what its encoder requires.

A pretrained tower declares the preprocessing its weights were trained with
(``Tower.input_options``: image size and normalisation, audio sample rate and waveform ...).
Before the preprocessors are fitted, :func:`merge_input_options` fills those options in, so a
user writes ``encoder: mobilenet_v2`` and gets 224 px ImageNet-normalised images without
knowing it; a user option that contradicts the weights is refused rather than silently
overridden, since the tower would then see pixels or sounds unlike anything it learnt from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import Preprocessor


def _same(a: Any, b: Any) -> bool:
    """Equal, with float tolerance inside lists (ImageNet statistics written by hand)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def required_options(encoder: str | None) -> tuple[str | None, dict[str, Any]]:
    """The modality and preprocessor options an encoder requires (``(None, {})`` for most)."""
    from tessera.encoders import ENCODERS

    cls = ENCODERS.get(encoder) if encoder and encoder in ENCODERS else None  # unknown: build_encoder says so
    required: dict[str, Any] = dict(getattr(cls, "input_options", {}) or {})
    return (getattr(cls, "modality", None) if required else None), required


def merge_input_options(encoder: str | None, modality: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """The preprocessor options for an input fed to ``encoder``: the user's plus the tower's requirements.

    Encoders that require nothing get the user's options back unchanged. Raises
    :class:`SchemaError` when the tower reads another modality or an option contradicts it,
    and when a waveform is asked for an encoder that reads log-mel spectrograms.
    """
    wants, required = required_options(encoder)
    if wants is not None and wants != modality:
        raise SchemaError(f"{where}: encoder {encoder!r} reads {wants} inputs, but the input is {modality}")
    merged = dict(options)
    for key, value in required.items():
        if key in merged and not _same(merged[key], value):
            raise SchemaError(
                f"{where}: encoder {encoder!r} needs {key}: {value!r} (its pretrained weights expect it), "
                f"but the schema sets {key}: {merged[key]!r}; remove the option and Tessera sets it"
            )
        merged[key] = value
    if modality == "audio" and merged.get("representation") == "waveform" and required.get("representation") != "waveform":
        raise SchemaError(
            f"{where}: encoder {encoder or 'audio_cnn (the default)'!r} reads log-mel spectrograms; "
            "representation: waveform is for the pretrained audio towers (whisper_encoder, speech_embedding, speaker)"
        )
    return merged


def check_prepared(encoder: str, pre: Preprocessor) -> None:
    """Refuse to build a tower over an input prepared some other way: a pipeline fitted before the
    encoder was chosen (a model config naming it only after the data was prepared) would feed
    it pixels or sounds unlike its training data."""
    wants, required = required_options(encoder)
    if not required:
        return
    config = pre.config()
    wrong = {k: v for k, v in required.items() if pre.modality != wants or not _same(config.get(k), v)}
    if wrong:
        given = {k: config.get(k) for k in wrong}
        raise SchemaError(
            f"encoder {encoder!r} needs its {wants} input prepared with {wrong}, but {pre.describe()} was prepared "
            f"with {given}; name the encoder before the data is prepared (the schema's encoder: {encoder}, or the "
            "model config's encoders) and Tessera prepares it that way"
        )
