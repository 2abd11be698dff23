"""The frozen-feature cache: a frozen encoder's output, computed once per row on the data side and kept on disk.

A frozen pretrained tower gives the same vector for a row every time, so running it at every
step of every epoch, again in every arm of a comparison and again in every later fit on the
same table is waste: a frozen MiniLM re-run each epoch cost about 3 minutes per 600-row epoch
on a loaded 2-core machine. Here the data side runs it instead, right after each batch is
decoded (:func:`tessera.pipeline.cache_split`); the model then receives a
:class:`~tessera.preprocess.base.Features` batch for that input, which the encoder passes
through (:meth:`tessera.encoders.base.Encoder.encoded`), so training over frozen towers costs
only the layers that learn. A saved model still holds its towers: predicting on raw rows (a
server, no cache at all) runs them as before and gives the same outputs.

Keys. A row's features are stored under the SHA-256 of its content (the file's bytes for
media, the text itself for text), in a store named by everything else that changes them: the
encoder's ``cache_key()`` (tower, package versions, options) and the input's preprocessing
(its preprocessor's options and fitted state, column names aside). Another image size, another
tower option, another package version: another store, so nothing stale is ever read. A file
that moved is still found; a file edited in place is not confused with its old self.

Storage. One SQLite database per store, ``<cache_dir>/<encoder>-<digest>.sqlite`` (default
``cache_dir``: :func:`tessera.datasets.home.features_home`, beside the prepared tables), in
WAL mode: readers never block and never see half a write; each batch of new rows is one
transaction, so a fill killed mid-way keeps every batch it committed and the next run computes
only the rest. Several processes may fill one store at once (a row written twice is the same
bytes; the first write stays). The store's key is kept inside it as JSON, for anyone asking
what it holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from tessera.errors import DataError, TesseraError
from tessera.media import is_missing, resolve_media
from tessera.preprocess.base import Features, ModalityBatch

if TYPE_CHECKING:
    from tessera.encoders.base import Encoder
    from tessera.pipeline import Batch, Pipeline, TableDataset
    from tessera.preprocess.base import Preprocessor

CHUNK = 32  # rows per encoder call and per committed transaction
SQL_VARIABLES = 500  # keys per SELECT ... IN (...): under SQLite's limit on bound parameters


# -- keys ----------------------------------------------------------------------------------------
def digest(data: Any) -> str:
    """SHA-256 of plain data (sorted JSON), for store names and keys of settings."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def content_key(value: Any, reads_files: bool, base_dir: str | None) -> str | None:
    """The SHA-256 of what a cell holds: a media file's bytes (wherever it lies), or the text; None when missing."""
    if is_missing(value):
        return None
    data = resolve_media(value, base_dir).read_bytes() if reads_files else str(value).encode()
    return hashlib.sha256(data).hexdigest()


def preprocessing_key(pre: Preprocessor) -> dict[str, Any]:
    """What changes an input's decoded values: its modality, options and fitted state (not its column names)."""
    state = pre.state_dict()
    return {"modality": state["modality"], "config": state["config"], "fitted": digest(state["fitted"])}


# -- the on-disk store -------------------------------------------------------------------------------
def to_blob(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes: dtype and shape kept, values bit for bit."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class FeatureStore:
    """Values by content key in one SQLite file; ``key`` (plain data) names what the values depend on.

    Connections are opened per process (DataLoader workers fork), on first use.
    """

    def __init__(self, path: str | os.PathLike, key: dict[str, Any]) -> None:
        self.path = Path(path)
        self.key = key
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, name: str, key: dict[str, Any]) -> "FeatureStore":
        """The store for ``key`` in ``cache_dir`` (created when absent); ``name`` starts its file name."""
        return cls(Path(cache_dir) / f"{name}-{digest(key)[:20]}.sqlite", key)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: atomic and consistent; a power cut may lose the last batch
                conn.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, data BLOB NOT NULL, mask BLOB)")
                conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('key', ?)", (json.dumps(self.key, sort_keys=True, default=str),))
            except (sqlite3.Error, OSError) as e:
                raise TesseraError(
                    f"cannot use the feature cache at {self.path}: {e}; set train.cache_dir to a writable folder, "
                    "or feature_cache: false"
                ) from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get(self, keys: Iterable[str]) -> dict[str, tuple[bytes, bytes | None]]:
        """The stored ``(data, mask)`` blobs of those keys that are there."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, tuple[bytes, bytes | None]] = {}
        db = self._db()
        for start in range(0, len(keys), SQL_VARIABLES):
            part = keys[start : start + SQL_VARIABLES]
            marks = ",".join("?" * len(part))
            for key, data, mask in db.execute(f"SELECT key, data, mask FROM rows WHERE key IN ({marks})", part):
                found[key] = (data, mask)
        return found

    def put(self, items: dict[str, tuple[bytes, bytes | None]]) -> None:
        """Store ``key -> (data, mask)`` blobs in one transaction (all or none); keys already there keep their value."""
        if not items:
            return
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?, ?)", [(k, d, m) for k, (d, m) in items.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def __getstate__(self) -> dict[str, Any]:  # a connection does not pickle; each process opens its own
        return {"path": self.path, "key": self.key, "_conn": None, "_pid": -1}


# -- the data-side stage ------------------------------------------------------------------------------
class FrozenFeatures:
    """Frozen encoders of some inputs, run on decoded batches; rows already in a store are not recomputed.

    ``cache_dir`` None keeps nothing on disk (features are still computed once per split).
    ``computed`` and ``reused`` count rows, for progress bars and benchmarks.
    """

    def __init__(
        self,
        encoders: dict[str, Encoder],
        pipeline: Pipeline,
        cache_dir: str | os.PathLike | None,
        *,
        device: str | torch.device = "cpu",
        chunk: int = CHUNK,
    ) -> None:
        self.encoders = {n: e.to(device).eval() for n, e in encoders.items()}
        self.preprocessors = {n: pipeline.preprocessors[n] for n in encoders}
        self.device = torch.device(device)
        self.chunk = chunk
        self.stores: dict[str, FeatureStore | None] = {}
        for name, enc in self.encoders.items():
            key = {"encoder": enc.cache_key(), "input": preprocessing_key(self.preprocessors[name])}
            self.stores[name] = None if cache_dir is None else FeatureStore.open(cache_dir, enc.encoder_name, key)
        self.computed = 0
        self.reused = 0

    def describe(self) -> str:
        return ", ".join(f"{n} ({e.encoder_name})" for n, e in self.encoders.items())

    def apply(self, batch: Batch, dataset: TableDataset) -> Batch:
        """The batch with each frozen input's decoded values replaced by its encoder's features."""
        from tessera.pipeline import Batch

        inputs = dict(batch.inputs)
        for name in self.encoders:
            pre = self.preprocessors[name]
            cells = dataset.cells(name, batch.rows)
            keys = []
            for row, cell, present in zip(batch.rows.tolist(), cells, batch.inputs[name].present.tolist()):
                try:
                    keys.append(content_key(cell, pre.reads_files, dataset.base_dir) if present else None)
                except DataError as e:  # the file went away after it was decoded
                    raise e.located(row=row, column=pre.columns[0]) from None
            inputs[name] = self.features(name, batch.inputs[name], keys)
        return Batch(inputs, batch.target, batch.rows, batch.skipped)

    def features(self, name: str, decoded: ModalityBatch, keys: Sequence[str | None]) -> Features:
        """Features of one input's decoded batch; ``keys[i]`` is row i's content key (None: absent row)."""
        encoder, store = self.encoders[name], self.stores[name]
        wanted = list(dict.fromkeys(k for k in keys if k is not None))
        if not wanted:  # no row present: the encoder gives the zeros (and the token shape) itself
            out, mask = self._run(encoder, decoded)
            return Features(out, decoded.present.clone(), mask)
        blobs = store.get(wanted) if store is not None else {}
        values = {k: (from_blob(d), None if m is None else from_blob(m)) for k, (d, m) in blobs.items()}
        self.reused += sum(1 for k in keys if k in blobs)
        first = {k: i for i, k in reversed(list(enumerate(keys))) if k is not None}  # one computation per content
        todo = [first[k] for k in wanted if k not in values]
        for start in range(0, len(todo), self.chunk):
            rows = todo[start : start + self.chunk]
            out, mask = self._run(encoder, decoded.index(torch.tensor(rows)))
            new = {keys[r]: (out[i].numpy(), None if mask is None else mask[i].numpy()) for i, r in enumerate(rows)}
            if store is not None:
                store.put({k: (to_blob(d), None if m is None else to_blob(m)) for k, (d, m) in new.items()})
            values.update(new)
            self.computed += len(rows)
        return assemble(keys, values, decoded.present)

    @torch.no_grad()
    def _run(self, encoder: Encoder, batch: ModalityBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, mask = encoder(batch.to(self.device))
        return out.float().cpu(), None if mask is None else mask.cpu()


def assemble(keys: Sequence[str | None], values: dict[str, tuple[np.ndarray, np.ndarray | None]], present: torch.Tensor) -> Features:
    """One Features batch from per-content values; rows without a key (absent) are zeros with an empty mask."""
    data0, mask0 = next(iter(values.values()))
    data = torch.zeros((len(keys),) + data0.shape, dtype=torch.from_numpy(data0).dtype)
    mask = None if mask0 is None else torch.zeros((len(keys),) + mask0.shape, dtype=torch.bool)
    for i, k in enumerate(keys):
        if k is None:
            continue
        d, m = values[k]
        data[i] = torch.from_numpy(d)
        if mask is not None:
            mask[i] = torch.from_numpy(m)
    return Features(data, present.clone(), mask)


def frozen_encoders(pipeline: Pipeline, specs: dict[str, Any] | None) -> dict[str, Encoder]:
    """The inputs whose encoder (as the model config, else the schema, else the modality names it) is frozen,
    built now. Encoder classes that can never be frozen are not built."""
    from tessera.encoders import ENCODERS
    from tessera.encoders.base import Encoder
    from tessera.model import build_encoder, encoder_spec

    out = {}
    for name, pre in pipeline.preprocessors.items():
        enc_name, options = encoder_spec(pipeline, specs or {}, name)
        if enc_name not in ENCODERS or ENCODERS[enc_name].cache_key is Encoder.cache_key:
            continue
        encoder = build_encoder(enc_name, pre, 0, options)  # frozen encoders have no width of their own to set
        if encoder.frozen:
            out[name] = encoder
    return out


def feature_stage(
    pipeline: Pipeline, specs: dict[str, Any] | None, cache_dir: str | os.PathLike | None, device: str = "cpu"
) -> FrozenFeatures | None:
    """The stage that runs the frozen encoders of ``pipeline``'s inputs once per row (None when none is frozen)."""
    encoders = frozen_encoders(pipeline, specs)
    if not encoders:
        return None
    from tessera.train import resolve_device

    return FrozenFeatures(encoders, pipeline, cache_dir, device=resolve_device(device))


def cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, or the default beside the prepared tables."""
    from tessera.datasets.home import features_home

    return Path(cache_dir) if cache_dir is not None else features_home()

