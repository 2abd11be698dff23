"""A saved shared space: raw values of any input (a caption, an image path, a sound's bytes) in, unit vectors out.

An :class:`AlignModel` works on preprocessed batches; search, serving and index building
work on what users hold. The :class:`Embedder` keeps the two together: the fitted
:class:`~tessera.pipeline.Pipeline` (tokenizer, normalisers) and the model, saved as one
folder so that ``tessera index build``, ``tessera search`` and ``tessera serve`` need
nothing else. Rows are decoded by the same pipeline code as training, so a query is
embedded exactly like the collection it searches.

Layout of a saved embedder: ``embedder.json`` (pipeline state and the arguments that
rebuild the model) and ``model.pt`` (weights), written to a temporary folder and swapped in
whole like a saved :class:`~tessera.predictor.Predictor`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

import tessera
from tessera.align.model import AlignModel, build_align_model
from tessera.errors import DataError, SchemaError, SkipReport, TesseraError
from tessera.files import atomic_dir
from tessera.media import is_missing
from tessera.pipeline import Pipeline, iterate
from tessera.preprocess.base import ModalityBatch, create_preprocessor
from tessera.preprocess.text import TextPreprocessor
from tessera.schema import Schema
from tessera.table import Table, read_table

META_FILE = "embedder.json"
MODEL_FILE = "model.pt"
FORMAT = "tessera.embedder/1"


class Embedder:
    """A fitted pipeline plus an :class:`AlignModel`; ``embed(input, values)`` gives ``(n, dim)`` float32 unit vectors.

    Build one with :meth:`create` (then train ``embedder.model`` with
    :func:`tessera.align.fit_alignment`), :meth:`from_sentence_transformer` (a text-only
    space from a pretrained sentence encoder, no training), or :meth:`load`.
    """

    def __init__(self, pipeline: Pipeline, model: AlignModel, build_kwargs: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.model = model.eval()
        self.build_kwargs = build_kwargs
        # Where embed_table reads (and keeps) the features of frozen towers (tessera.features):
        # an index build over the table the space was trained on then runs no tower at all.
        # None: the towers run, as in a server.
        self.feature_cache: Path | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, pipeline: Pipeline, **build_kwargs: Any) -> "Embedder":
        """A new (untrained) embedder; ``build_kwargs`` go to :func:`tessera.align.build_align_model`."""
        return cls(pipeline, build_align_model(pipeline, **build_kwargs), build_kwargs)

    @classmethod
    def from_sentence_transformer(
        cls, model: str | os.PathLike, *, input_name: str = "text", max_length: int = 128
    ) -> "Embedder":
        """A text-only space that is the sentence encoder's own (identity projection), by hub id or local folder."""
        model = str(model)
        schema = Schema.from_dict(
            {
                "inputs": {
                    input_name: {
                        "modality": "text",
                        "options": {"tokenizer": "pretrained", "pretrained": model, "max_length": max_length},
                    }
                }
            }
        )
        spec = schema.inputs[input_name]
        text = create_preprocessor(spec.modality, spec.columns, **spec.options)
        text.fit(pd.DataFrame({input_name: []}))  # loads the tokenizer; a pretrained one learns nothing from rows
        pipeline = Pipeline(schema, {input_name: text}, None)
        encoders = {input_name: {"name": "sentence_transformer", "options": {"model": model}}}
        aligned = build_align_model(pipeline, dim=1, encoders=encoders)
        dim = aligned.encoders[input_name].output_dim  # known once the model is loaded
        aligned.heads[input_name] = torch.nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            aligned.heads[input_name].weight.copy_(torch.eye(dim))
        aligned.dim = dim
        return cls(pipeline, aligned, {"dim": dim, "encoders": encoders})

    # -- facts ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def inputs(self) -> dict[str, str]:
        """Input name -> modality (``{"caption": "text", "image": "image"}``)."""
        return {name: pre.modality for name, pre in self.pipeline.preprocessors.items()}

    def input_for(self, modality: str) -> str:
        """The one input of this modality (an error names the choices when there are none or several)."""
        names = [n for n, m in self.inputs.items() if m == modality]
        if len(names) != 1:
            what = "no" if not names else f"{len(names)}"
            raise SchemaError(
                f"this embedder has {what} {modality} input(s) {names}; its inputs are {self.inputs}"
                + ("; name the input instead of the modality" if names else "")
            )
        return names[0]

    def resolve_input(self, name: str) -> str:
        if name in self.pipeline.preprocessors:
            return name
        if name in set(self.inputs.values()):
            return self.input_for(name)
        raise SchemaError(f"unknown input {name!r}; this embedder embeds {self.inputs}")

    # -- embedding ------------------------------------------------------------------------
    def embed(
        self, name: str, values: Sequence[Any], *, base_dir: str | os.PathLike | None = None, batch_size: int = 256
    ) -> np.ndarray:
        """Embed raw cell values of one input (an input name or a modality with one input).

        A value is what a table cell holds: text, a file path (relative to ``base_dir``),
        raw bytes, or for a multi-column input a mapping of column to value. A value that
        cannot be decoded raises a :class:`~tessera.errors.DataError` naming its position, and
        so does a missing one (None, NaN, empty text): a table skips such a row, but here the
        caller expects one vector per value.
        """
        name = self.resolve_input(name)
        pre = self.pipeline.preprocessors[name]
        missing = [i for i, v in enumerate(values) if is_missing(v)] if len(pre.columns) == 1 else []
        if missing:
            raise DataError("the value is missing or empty: there is nothing to embed", row=missing[0], column=name)
        if isinstance(pre, TextPreprocessor) and values and all(isinstance(v, str) and not is_missing(v) for v in values):
            return self._embed_texts(name, pre, list(values), batch_size)
        columns = pre.columns
        if len(columns) == 1:
            frame = pd.DataFrame({columns[0]: pd.Series(list(values), dtype=object)})
        else:
            frame = pd.DataFrame([dict(v) for v in values], columns=columns)
        table = Table(frame, None if base_dir is None else str(base_dir), "query")
        parts = [v for _, v in self.embed_table(table, name, batch_size=batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    @torch.no_grad()
    def _embed_texts(self, name: str, pre: TextPreprocessor, texts: list[str], batch_size: int) -> np.ndarray:
        """Plain strings: one tokenizer call per batch (Rust), none of the table machinery.

        Same ids and mask as the table path, whose overhead a server's small batches would
        otherwise pay on every call (int8 MiniLM, one thread: 10.4 vs 13.5 ms for one caption,
        33 vs 37 ms for 12, 73 vs 78 ms for 32).
        """
        device = next(self.model.parameters()).device
        parts = []
        for i in range(0, len(texts), batch_size):
            ids, mask = pre.encode_batch(texts[i : i + batch_size])
            batch = ModalityBatch(torch.from_numpy(ids), torch.ones(len(ids), dtype=torch.bool), torch.from_numpy(mask)).to(device)
            parts.append(self.model.embed(name, batch).float().cpu().numpy())
        return np.concatenate(parts)

    @torch.no_grad()
    def embed_table(
        self,
        table: Any,
        name: str,
        *,
        batch_size: int = 256,
        on_error: str = "raise",
        report: SkipReport | None = None,
        num_workers: int = 0,
        project: bool = True,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(rows, vectors)`` per batch for one input over a table; rows are the table's index labels.

        Under ``on_error="skip"`` undecodable rows are left out (and recorded in ``report``);
        rows where the input is missing are left out too, as they have nothing to embed.
        ``project=False`` gives the tower's pooled output before the shared space's projection
        (what heads over frozen towers train on).
        """
        name = self.resolve_input(name)
        t = read_table(table)
        pipeline = self.pipeline.restrict([name])
        dataset = pipeline.dataset(t, with_target=False, on_error=on_error)
        loader = pipeline.loader(dataset, batch_size=batch_size, num_workers=num_workers)
        device = next(self.model.parameters()).device
        encoder = self.model.encoders[name]
        stage = None
        if self.feature_cache is not None and encoder.frozen:
            from tessera.features import FrozenFeatures

            stage = FrozenFeatures({name: encoder}, pipeline, self.feature_cache, device=device)
        for batch in iterate(loader, report):
            if stage is not None:
                batch = stage.apply(batch, dataset)
            mb = batch.inputs[name].to(device)
            encoder = self.model.encoders[name]
            vectors = (self.model.embed(name, mb) if project else encoder.pooled(mb)).float().cpu()
            keep = mb.present.cpu()
            if keep.any():
                yield batch.rows[keep].numpy(), vectors[keep].numpy()

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        meta = {
            "format": FORMAT,
            "tessera_version": tessera.__version__,
            "pipeline": self.pipeline.state_dict(),
            "build_kwargs": self.build_kwargs,
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            torch.save(self.model.state_dict(), tmp / MODEL_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Embedder":
        path = Path(path)
        meta_path, weights = path / META_FILE, path / MODEL_FILE
        if not meta_path.is_file() or not weights.is_file():
            raise TesseraError(f"{path} is not a saved Tessera embedder (expected {META_FILE} and {MODEL_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise TesseraError(f"{meta_path} has format {meta.get('format')!r}; this Tessera reads {FORMAT!r}")
        pipeline = Pipeline.from_state(meta["pipeline"])
        model = build_align_model(pipeline, **meta["build_kwargs"])
        model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        return cls(pipeline, model.to(device), meta["build_kwargs"])

    def __repr__(self) -> str:
        return f"Embedder(inputs={self.inputs}, dim={self.dim})"


def compose(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """A composed query ("like this image, but in blue"): the weighted sum of unit vectors, re-normalised.

    The baseline of composed retrieval (e.g. Baldrati et al. 2022 use it as their first
    comparison): each part is normalised first, so the weights, not the parts' norms, set
    how much each counts. Negative weights steer away ("like this, but not red").
    """
    if not vectors:
        raise TesseraError("a composed query needs at least one part")
    weights = [1.0] * len(vectors) if weights is None else list(weights)
    if len(weights) != len(vectors):
        raise TesseraError(f"got {len(vectors)} query parts but {len(weights)} weights")
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32).reshape(-1))
    for v, w in zip(vectors, weights):
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        n = np.linalg.norm(v)
        if n > 0:
            total += w * v / n
    norm = np.linalg.norm(total)
    if norm == 0:
        raise TesseraError("the composed query is the zero vector (the parts cancel out); change the weights")
    return total / norm
