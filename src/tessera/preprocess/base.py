"""The contract every modality preprocessor follows, and the registry that creates them by name.

A preprocessor turns the raw cell(s) of one model input into a fixed-shape NumPy
``Sample`` (data plus an optional per-position mask). Fixed shapes are what make
batches stackable and let a whole split be decoded once and cached as tensors.
A missing value is not an error: ``load`` returns ``None`` and the batch records the
sample as absent, which later lets models train and predict with missing modalities.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.registry import Registry


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
        return ModalityBatch(
            self.data.to(device),
            self.present.to(device),
            None if self.mask is None else self.mask.to(device),
        )

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def index(self, idx: torch.Tensor | slice) -> "ModalityBatch":
        return ModalityBatch(self.data[idx], self.present[idx], None if self.mask is None else self.mask[idx])


@dataclass
class LoadContext:
    """Where a row lives, so decoders can resolve relative paths and name the row in errors."""

    base_dir: str | None = None
    row: int | None = None


class Preprocessor(ABC):
    """Base class. Subclasses set ``modality`` and keep constructor kwargs JSON-serialisable.

    ``fit`` sees only the training split (normalisers, vocabularies, tokenizers learn there).
    ``state_dict`` must hold everything needed to preprocess new data at predict time.
    """

    modality: ClassVar[str]
    multi_column: ClassVar[bool] = False  # numeric/categorical group several columns into one input

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

    # -- helpers for subclasses ---------------------------------------------------------
    def describe(self) -> str:
        """One line for `tessera data inspect` output."""
        return f"{self.modality}({', '.join(self.columns)})"


PREPROCESSORS: Registry[Preprocessor] = Registry("modality", "tessera.preprocess", attribute="modality")
register = PREPROCESSORS.register  # @register("modality") on a Preprocessor subclass


def create_preprocessor(modality: str, columns: Sequence[str], **options: Any) -> Preprocessor:
    """Create a preprocessor by modality name; unknown options fail with the list of known ones."""
    return PREPROCESSORS.create(modality, list(columns), context=f"{modality} column(s) {list(columns)}", **options)


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
