"""Text derived from another column: speech transcribed (Whisper tiny.en), text read from images (RapidOCR).

A schema input ``{modality: text, from: recording, via: transcribe}`` (or ``from: photo, via: ocr``)
is a text input whose values are computed from the files of another column, so what was said
in a recording or printed on a product photo can feed a text tower. The text preprocessor does
it for each row it loads (:class:`~tessera.preprocess.text.TextPreprocessor` with ``via``), in
training, prediction and serving alike. A derivation is a frozen model like any frozen tower,
so it is cached like one (:mod:`tessera.features`): each file's text is kept under the hash of its
bytes, in a store named by the derivation and its packages' versions, and computed once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource, is_missing, resolve_media
from tessera.progress import progress_bar

SNIFFED = 10  # source cells looked at to check what a derivation's source column holds


def _transcribe(source: MediaSource) -> str:
    from tessera.preprocess.audio import decode_audio
    from tessera.transcribe import transcribe

    wave, rate = decode_audio(source)
    return transcribe(wave, rate)


def _read_text(source: MediaSource) -> str:
    from tessera.ocr import read_text

    return read_text(source.read_bytes())


@dataclass(frozen=True)
class Derivation:
    name: str  # what a schema's ``via`` says
    source: str  # the modality it reads
    tower: str  # its entry in the zoo catalogue (packages, licence)
    does: str  # for messages: "transcribes speech"
    run: Callable[[MediaSource], str]
    options: tuple[tuple[str, Any], ...] = ()  # settings that change its output, for the cache key

    def cache_key(self) -> dict[str, Any]:
        from tessera import zoo

        return {"via": self.name, "packages": zoo.versions(self.tower), "options": dict(self.options)}


DERIVATIONS: dict[str, Derivation] = {
    d.name: d
    for d in (
        Derivation("transcribe", "audio", "transcribe", "transcribes English speech (Whisper tiny.en)", _transcribe,
                   (("model", "tiny.en int8"), ("beam_size", 5))),
        Derivation("ocr", "image", "ocr", "reads the text in images (RapidOCR, PP-OCRv4)", _read_text, (("min_score", 0.5),)),
    )
}


def derivation(via: Any, where: str = "text input") -> Derivation:
    """The derivation a schema's ``via`` names; a SchemaError listing the known ones otherwise."""
    if via not in DERIVATIONS:
        known = ", ".join(f"{n} ({d.source} -> text: {d.does})" for n, d in DERIVATIONS.items())
        raise SchemaError(f"{where}: unknown via {via!r}; known: {known}")
    return DERIVATIONS[via]


_STORES: dict[tuple[str, str], Any] = {}


def _store(via: str, cache_dir: str | os.PathLike | None):
    if cache_dir is None:
        return None
    from tessera.features import FeatureStore

    key = (via, str(cache_dir))
    if key not in _STORES:
        _STORES[key] = FeatureStore.open(cache_dir, via, DERIVATIONS[via].cache_key())
    return _STORES[key]


def derived_text(via: str, value: Any, base_dir: str | None, cache_dir: str | os.PathLike | None) -> str | None:
    """The text ``via`` derives from one source cell (None when the cell is missing); read from the cache when there."""
    if is_missing(value):
        return None
    source = resolve_media(value, base_dir)
    store = _store(via, cache_dir)
    key = hashlib.sha256(source.read_bytes()).hexdigest()
    if store is not None:
        found = store.get([key])
        if key in found:
            return found[key][0].decode("utf-8")
    text = DERIVATIONS[via].run(source)
    if store is not None:
        store.put({key: (text.encode("utf-8"), None)})
    return text


def derived_texts(
    via: str, values: Sequence[Any], base_dir: str | None, cache_dir: str | os.PathLike | None, column: str
) -> list[str | None]:
    """:func:`derived_text` of many cells, with a progress bar; a file that cannot be read names its row."""
    out: list[str | None] = []
    with progress_bar(f"{via} {column}", total=len(values)) as advance:
        for row, value in zip(getattr(values, "index", range(len(values))), values):
            try:
                out.append(derived_text(via, value, base_dir, cache_dir))
            except DataError as e:
                raise e.located(row=int(row), column=column) from None
            advance()
    return out


def check_source(via: str, values: pd.Series, base_dir: str | None, where: str) -> None:
    """Refuse a source column that does not hold what the derivation reads, judged on a few cells."""
    from tessera.schema import cell_modality

    d = derivation(via, where)
    seen = [cell_modality(v, base_dir) for v in values.dropna().head(SNIFFED)]
    wrong = [m for m in seen if m != d.source]
    if seen and len(wrong) > len(seen) // 2:
        held = max(set(wrong), key=wrong.count) or "no media files"
        raise SchemaError(
            f"{where}: via {via} {d.does} and reads {d.source}, but column '{values.name}' holds {held} "
            f"({len(wrong)} of the {len(seen)} values looked at)"
        )


def training_frame(
    train: pd.DataFrame, column: str, via: str, base_dir: str | None, cache_dir: str | os.PathLike | None,
    *, texts_needed: bool, where: str,
) -> pd.DataFrame:
    """The training rows a derived input is fitted on: the source column checked, and replaced by its
    derived texts when the preprocessor learns from them (a tokenizer trained on the rows)."""
    check_source(via, train[column], base_dir, where)
    if not texts_needed:
        return train
    frame = train.copy()
    frame[column] = derived_texts(via, train[column], base_dir, cache_dir, column)
    return frame

