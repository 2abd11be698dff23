"""The contract every modality preprocessor follows, and the registry that creates them by name.

A preprocessor turns the raw cell(s) of one model input into a fixed-shape NumPy
``Sample`` (data plus an optional per-position mask). Fixed shapes are what make
batches stackable and let a whole split be decoded once and cached as tensors.
A missing value is not an error: ``load`` returns ``None`` and the batch records the
sample as absent, which later lets models train and predict with missing modalities.

A preprocessor is also where everything else Tessera knows about its modality lives, so a
new modality is one preprocessor module plus one encoder module: the facts an encoder is
built from (:meth:`Preprocessor.encoder_facts`), how its column is checked and recognised
(``media``, ``extensions``, ``mime_types``, :meth:`Preprocessor.check_column`), how its values
are corrupted for robustness curves (``noise``, :meth:`Preprocessor.corrupt`), shown in a
report (:meth:`Preprocessor.render`) and in ``tessera data inspect``
(:meth:`Preprocessor.describe_sample`), the training statistics drift monitoring compares
requests with (:meth:`Preprocessor.reference_statistics`), and, for media, what decoding a
cell would take and how much this model's input is worth decoding
(:meth:`Preprocessor.decode_cost`, :meth:`Preprocessor.decode_budget`), which a server reads
from the file's header before it lets any decoder near untrusted bytes, and what of a cell is
worth keeping to retrain on (:meth:`Preprocessor.compact`).
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.media import is_missing
from tessera.registry import Registry

GAUSSIAN_STDS = (0.0, 0.25, 0.5, 1.0, 2.0)
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
TEXT_CHARS = 2000  # a report shows at most this much of a text cell


@dataclass
class Sample:
    """One input of one row. ``mask`` marks valid positions (frames, tokens, features)."""

    data: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class ModalityBatch:
    """A batch of one input: ``data`` (B, ...), ``present`` (B,) and optional ``mask`` (B, T)."""

    data: torch.Tensor
    present: torch.Tensor
    mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "ModalityBatch":
        return type(self)(
            self.data.to(device),
            self.present.to(device),
            None if self.mask is None else self.mask.to(device),
        )

    def __len__(self) -> int:
        return int(self.data.shape[0])

    is_features: ClassVar[bool] = False  # True for :class:`Features`: an encoder's output, not decoded values

    def index(self, idx: torch.Tensor | slice) -> "ModalityBatch":
        return type(self)(self.data[idx], self.present[idx], None if self.mask is None else self.mask[idx])

    @classmethod
    def concat(cls, parts: Sequence["ModalityBatch"]) -> "ModalityBatch":
        """Batches of one input stacked in order (of the first part's kind)."""
        mask = None if parts[0].mask is None else torch.cat([p.mask for p in parts])
        return type(parts[0])(torch.cat([p.data for p in parts]), torch.cat([p.present for p in parts]), mask)


@dataclass
class Features(ModalityBatch):
    """An input's frozen-encoder output (``(B, D)``, or tokens ``(B, T, D)`` with a mask), computed
    on the data side in place of its decoded values (:mod:`tessera.features`).

    A model hands it to the encoder's :meth:`~tessera.encoders.base.Encoder.encoded`, which
    returns it as it is: the tower already ran, once per row, and nothing in it learns.
    """

    is_features: ClassVar[bool] = True


@dataclass(frozen=True)
class DecodeCost:
    """What decoding one media cell produces, known from its header before anything is decoded.

    ``pixels``: every pixel the decoder allocates (all decoded frames of a video, after any
    reduction while decoding such as JPEG draft mode); ``samples``: audio samples over all
    channels; ``seconds``: audio duration decoded. ``what`` describes the file for messages.
    """

    pixels: int = 0
    samples: int = 0
    seconds: float = 0.0
    what: str = ""

    def over(self, budget: "DecodeCost") -> list[str]:
        """The measures of this cost above ``budget``'s (a 0 in the budget: no bound)."""
        measures = ("pixels", "samples", "seconds")
        return [m for m in measures if getattr(budget, m) and getattr(self, m) > getattr(budget, m)]


@dataclass(frozen=True)
class Noise:
    """A corruption for robustness curves: its name (the unit of its levels) and the levels, clean to worst."""

    name: str
    levels: tuple[float, ...]


GAUSSIAN = Noise("gaussian_std", GAUSSIAN_STDS)


@dataclass
class LoadContext:
    """Where a row lives, so decoders can resolve relative paths and name the row in errors;
    ``cache_dir``: the feature cache, where derived text inputs keep their texts (None: not kept)."""

    base_dir: str | None = None
    row: int | None = None
    cache_dir: str | None = None


class Preprocessor(ABC):
    """Base class. Subclasses set ``modality`` and keep constructor kwargs JSON-serialisable.

    ``fit`` sees only the training split (normalisers, vocabularies, tokenizers learn there).
    ``state_dict`` must hold everything needed to preprocess new data at predict time.
    """

    modality: ClassVar[str]
    multi_column: ClassVar[bool] = False  # numeric/categorical group several columns into one input
    default_encoder: ClassVar[str]  # the encoder (registry name) used when neither schema nor config names one
    media: ClassVar[bool] = False  # cells are files or bytes (paths relative to the table)
    mime_types: ClassVar[tuple[str, ...]] = ()  # media: MIME prefixes of content it decodes, its own family first
    extensions: ClassVar[frozenset[str]] = frozenset()  # media: file suffixes that mark a column as this modality
    noise: ClassVar[Noise | None] = None  # robustness curves leave out inputs without one

    def __init__(self, columns: Sequence[str]) -> None:
        if not self.multi_column and len(columns) != 1:
            raise SchemaError(f"{self.modality} preprocessor takes one column, got {list(columns)}")
        self.columns = list(columns)

    # -- learning -------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        """Learn statistics from the training rows. Default: nothing to learn."""
        return self

    # -- per row ----------------------------------------------------------------------
    @abstractmethod
    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        """Decode one row's values (one per column). ``None`` means the input is missing.

        Raise :class:`DataError` for unusable data; row/column are filled in by the caller.
        """

    @abstractmethod
    def empty(self) -> Sample:
        """A zero sample with the same shapes as ``load`` returns, used for missing inputs."""

    # -- persistence -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments (besides columns). Default: public attributes named like params."""
        params = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in params if k not in ("self", "columns")}

    def fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned, JSON-serialisable. Override together with ``load_fitted_state``."""
        return {}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "columns": self.columns,
            "config": self.config(),
            "fitted": self.fitted_state(),
        }

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Preprocessor":
        pre = create_preprocessor(state["modality"], state["columns"], **state.get("config", {}))
        pre.load_fitted_state(state.get("fitted", {}))
        return pre

    # -- what the rest of Tessera asks a modality ------------------------------------------
    def encoder_facts(self) -> dict[str, Any]:
        """What an encoder must know about this input (tensor sizes, vocabulary ...), from the fitted state.

        ``build_model`` passes each encoder the facts its constructor names, so a config only
        names components and their widths. Default: nothing.
        """
        return {}

    @classmethod
    def derived_inputs(cls, col: pd.Series, base_dir: str | None) -> list[tuple[str, str]]:
        """Other inputs this column can feed, for schema inference to propose: ``(modality, reason)``.

        Default: none. A video proposes its sound track as an audio input.
        """
        return []

    @classmethod
    def check_column(cls, col: pd.Series, column: str) -> None:
        """Refuse a column of the wrong kind before anything is fitted, naming the first bad row.

        Default: media columns must hold file paths or bytes; other modalities accept anything here.
        """
        if not cls.media:
            return
        for row, v in col.dropna().items():
            if not isinstance(v, (str, bytes, bytearray, memoryview, dict, os.PathLike)):
                raise DataError(
                    f"a {cls.modality} column must hold file paths or bytes, found {type(v).__name__} {v!r:.40}",
                    row=int(row), column=column,
                )

    def corrupt(self, batch: ModalityBatch, level: float, generator: torch.Generator) -> ModalityBatch:
        """A noisy copy of a batch of this input at ``level`` (a value of ``noise.levels``); absent rows unchanged.

        Default: Gaussian noise of std ``level`` in preprocessed units (after standardising, so 1.0
        is one training std), on the present rows and valid positions only.
        """
        return gaussian_noise(batch, level, generator)

    def render(self, values: Sequence[Any], base_dir: str | None) -> dict[str, Any]:
        """One row's cells as a person should see them in a report: ``kind`` (image, audio, text, values,
        missing) plus ``src`` (a data URI) or ``value``. Decoding failures raise :class:`DataError`.

        Default: grouped columns as their plain values; one column as (truncated) text.
        """
        if self.multi_column:
            return {"kind": "values", "value": {c: _plain(v) for c, v in zip(self.columns, values)}}
        if is_missing(values[0]):
            return {"kind": "missing"}
        text = str(values[0])
        return {"kind": "text", "value": text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."}

    def describe_sample(self, sample: Sample | None) -> str:
        """One decoded cell in a line, for `tessera data inspect`: shape, valid positions, value range."""
        if sample is None:
            return "missing"
        d = sample.data
        text = f"{self.modality} {tuple(d.shape)} {d.dtype}"
        if sample.mask is not None:
            text += f", {int(sample.mask.sum())}/{sample.mask.size} valid"
        if d.dtype.kind == "f":
            text += f", mean {float(d.mean()):.3f} std {float(d.std()):.3f}"
        elif d.dtype.kind in "iu":
            text += f": {d[: min(8, d.size)].tolist()}"
        return text

    def decode_cost(self, data: bytes) -> DecodeCost:
        """What decoding this media content would produce, read from its header only (no pixel or sample is decoded).

        Raise :class:`DataError` when the header is unreadable. Default (non-media inputs): nothing.
        """
        return DecodeCost()

    def decode_budget(self) -> DecodeCost:
        """The most a cell of this input is worth decoding, relative to what the model keeps of it.

        A server refuses content over it before decoding (a 300 KB PNG can claim 9400x9400
        RGBA pixels, 350 MB decoded, for a model that looks at 64x64). Default: no bound.
        """
        return DecodeCost()

    def compact(self, data: bytes) -> bytes | None:
        """A media cell re-encoded as small as retraining on it allows: what the model uses, nothing else.

        A server keeps this rather than what a client uploaded (no trailing data, no metadata,
        no pixels beyond what the model looks at). None: keep nothing but its hash. Default: None.
        """
        return None

    def reference_statistics(self) -> dict[str, tuple[float, float]]:
        """Column -> (mean, std) of the training rows, which drift monitoring compares requests with. Default: none."""
        return {}

    @property
    def reads_files(self) -> bool:
        """Whether a cell is a file (a path or bytes) whose content is the value: media, and text derived from media."""
        return self.media

    # -- helpers for subclasses ---------------------------------------------------------
    def describe(self) -> str:
        """One line for `tessera data inspect` output."""
        return f"{self.modality}({', '.join(self.columns)})"


def _plain(v: Any) -> Any:
    if is_missing(v):
        return None
    return v.item() if isinstance(v, np.generic) else v


def gaussian_noise(batch: ModalityBatch, std: float, generator: torch.Generator) -> ModalityBatch:
    """``batch`` plus Gaussian noise of ``std`` on present rows (and valid positions where there is a mask)."""
    noise = torch.randn(batch.data.shape, generator=generator) * std
    keep = present_rows(batch.present, batch.data)
    if batch.mask is not None:
        keep = keep & batch.mask.view(*batch.mask.shape, *([1] * (batch.data.dim() - batch.mask.dim())))
    return ModalityBatch(torch.where(keep, batch.data + noise, batch.data), batch.present, batch.mask)


def present_rows(present: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """(B,) row flags shaped to broadcast over ``data`` (B, ...)."""
    return present.view(-1, *([1] * (data.dim() - 1)))


PREPROCESSORS: Registry[Preprocessor] = Registry("modality", "tessera.preprocess", attribute="modality")
register = PREPROCESSORS.register  # @register("modality") on a Preprocessor subclass


def create_preprocessor(modality: str, columns: Sequence[str], **options: Any) -> Preprocessor:
    """Create a preprocessor by modality name; unknown options fail with the list of known ones."""
    return PREPROCESSORS.create(modality, list(columns), context=f"{modality} column(s) {list(columns)}", **options)


def preprocessor_class(modality: str) -> type[Preprocessor]:
    """The registered preprocessor of a modality (its class attributes describe the modality)."""
    return PREPROCESSORS.get(modality)


def modalities() -> list[str]:
    """Every registered modality, in registration order."""
    return list(PREPROCESSORS)


def media_modalities() -> list[str]:
    """The modalities whose cells are files or bytes (the one list of them)."""
    return [m for m in PREPROCESSORS if PREPROCESSORS.get(m).media]


def media_modality_of(mime: str | None) -> str | None:
    """The media modality whose own MIME family (the first of its ``mime_types``) ``mime`` is in; None if none."""
    if not mime:
        return None
    return next((m for m in media_modalities() if mime.startswith(PREPROCESSORS.get(m).mime_types[:1])), None)


def collate_samples(pre: Preprocessor, samples: Sequence[Sample | None]) -> ModalityBatch:
    """Stack samples into a batch; missing ones become zeros with ``present=False``."""
    empty = pre.empty()
    datas, masks, present = [], [], []
    for s in samples:
        present.append(s is not None)
        s = s if s is not None else empty
        datas.append(s.data)
        if empty.mask is not None:
            m = s.mask if s.mask is not None else np.ones(empty.mask.shape, dtype=bool)
            masks.append(m if present[-1] else np.zeros_like(m, dtype=bool))
    data = torch.from_numpy(np.stack(datas))
    mask = torch.from_numpy(np.stack(masks)).bool() if masks else None
    return ModalityBatch(data=data, present=torch.tensor(present, dtype=torch.bool), mask=mask)


def load_located(pre: Preprocessor, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
    """``pre.load`` with any error converted to a :class:`DataError` naming row and column.

    Decoders raise all sorts of exceptions on corrupt input (PIL.UnidentifiedImageError,
    soundfile.LibsndfileError, av.error.InvalidDataError, ValueError ...); the user
    should see which row and column, not a traceback from inside the decoder.
    """
    column = pre.columns[0] if len(pre.columns) == 1 else ", ".join(pre.columns)
    try:
        return pre.load(values, ctx)
    except DataError as e:
        raise e.located(row=ctx.row, column=column) from None
    except (TesseraError, MemoryError, KeyboardInterrupt):  # misuse/config errors are not bad rows
        raise
    except Exception as e:  # noqa: BLE001 - converting decoder failures is the point
        raise DataError(f"cannot be read as {pre.modality}: {type(e).__name__}: {e}", row=ctx.row, column=column) from e
