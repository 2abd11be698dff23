"""User feedback, kept with the request it is about, so that it can become training data.

Every prediction and search the server answers is logged (request id, the key that made it,
the inputs as the model saw them, the output); ``POST /v1/feedback`` adds a correction or
rating to a request id, from the same key only. :func:`export_training_table` joins the two
into a table ``tessera fit`` reads: the model's input columns (media as bytes) plus the
target columns, taken from the correction, or from the prediction when the user confirmed it
(rating > 0). The store is SQLite by default and anything SQLAlchemy speaks by URL
(``postgresql://...``).

What is kept of a request is what retraining needs, not what the client sent: a media cell
becomes its preprocessor's compact copy (:meth:`~tessera.preprocess.base.Preprocessor.compact`:
an image at twice the model's size, the audio crop the model hears; anything appended to the
file or hidden in its metadata is gone) plus the SHA-256 and size of the upload. The store is
bounded: past ``max_bytes`` of kept data the oldest requests go first, and requests without
feedback go after ``retention_days``. A SQLite file is created readable by its owner only
(its write-ahead log and shared-memory files take the same mode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import pandas as pd
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine

from tessera.errors import TesseraError
from tessera.files import atomic_path

log = logging.getLogger("tessera.serve")
PRUNE_EVERY_S = 60.0  # how often retention is applied (the size cap is checked on every write)
PRUNE_TO = 0.9  # past the size cap, the oldest requests go until this share of it is left
metadata = MetaData()
requests_table = Table(
    "requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("route", String(32), nullable=False),
    Column("created", Float, nullable=False),
    Column("key_id", String(32)),
    Column("target", Text),  # JSON list of the model's target columns (predictions)
    Column("output", Text),  # JSON: the prediction, or the result ids of a search
)
inputs_table = Table(
    "request_inputs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), ForeignKey("requests.request_id"), nullable=False, index=True),
    Column("column", String(256), nullable=False),
    Column("text", Text),
    Column("number", Float),
    Column("data", LargeBinary),  # media: the preprocessor's compact copy
    Column("sha256", String(64)),  # media: of the bytes the client sent
    Column("size", Integer),  # media: how many bytes the client sent
)
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("created", Float, nullable=False),
    Column("key_id", String(32)),
    Column("item_id", String(256)),  # the search result the feedback is about
    Column("prediction", Text),  # JSON, as the client saw it
    Column("correction", Text),  # JSON: the right answer
    Column("rating", Integer),
    Column("comment", Text),
)


def database_url(value: str | os.PathLike) -> str:
    """A SQLAlchemy URL as given, or a SQLite file for a plain path."""
    text_ = str(value)
    return text_ if "://" in text_ else f"sqlite:///{Path(text_).resolve()}"


def connect(url: str | os.PathLike) -> Engine:
    url = database_url(url)
    sqlite = url.startswith("sqlite")
    if sqlite:
        _owner_only(url)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {})
    if sqlite:

        @event.listens_for(engine, "connect")
        def _wal(conn, _record) -> None:  # readers do not block the server's writes
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across app crashes, one fsync per checkpoint

    metadata.create_all(engine)
    _add_new_columns(engine)
    return engine


def _owner_only(url: str) -> None:
    """Create a SQLite database file readable and writable by its owner only, or make an existing one so.

    SQLite gives the -wal and -shm files it creates the database file's mode.
    """
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); making it owner-only", path, mode)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for extra in ("-wal", "-shm"):
        if os.path.exists(path + extra):
            os.chmod(path + extra, 0o600)


def _add_new_columns(engine: Engine) -> None:
    """Columns added since a database was created (nullable, so old rows stay valid)."""
    for table in (requests_table, inputs_table, feedback_table):
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                kind = column.type.compile(engine.dialect)
                with engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


@dataclass(frozen=True)
class Logged:
    """What the store knows of a request feedback can be about."""

    route: str
    key_id: str | None
    target: list[str] | None
    output: Any


class FeedbackStore:
    """Requests and their feedback: ``max_bytes`` caps what is kept, ``retention_days`` how long unrated requests stay."""

    def __init__(self, url: str | os.PathLike, *, max_bytes: int | None = None,
                 retention_days: float | None = None) -> None:
        self.engine = connect(url)
        self.max_bytes, self.retention_days = max_bytes, retention_days
        self._last_prune = 0.0
        self.kept_bytes = self._measure()

    # -- writing (the server's writer thread) ---------------------------------------------
    def log_request(self, request_id: str, route: str, key_id: str | None, cells: Mapping[str, Any], output: Any,
                    target: list[str] | None = None, media: Mapping[str, Any] | None = None) -> None:
        """Keep a request: plain cells as they are, media as ``media[column].compact(...)`` (a preprocessor's) and a hash."""
        rows = []
        for column, value in cells.items():
            row = {"request_id": request_id, "column": column, "text": None, "number": None, "data": None,
                   "sha256": None, "size": None}
            if isinstance(value, (bytes, bytearray)):
                data = bytes(value)
                pre = (media or {}).get(column)
                row.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), data=_compact(pre, data, column))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                row["number"] = float(value)
            else:
                row["text"] = str(value)
            rows.append(row)
        out = json.dumps(output, default=str)
        with self.engine.begin() as conn:
            conn.execute(
                requests_table.insert().values(
                    request_id=request_id, route=route, created=time.time(), key_id=key_id,
                    target=json.dumps(target) if target else None, output=out,
                )
            )
            if rows:
                conn.execute(inputs_table.insert(), rows)
        self.kept_bytes += len(out) + sum(len(r["data"] or b"") + len(r["text"] or "") for r in rows)
        self.prune()

    def request(self, request_id: str) -> Logged | None:
        """The logged request, or None when there is none with this id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(requests_table.c.route, requests_table.c.key_id, requests_table.c.target,
                                      requests_table.c.output).where(requests_table.c.request_id == request_id)).first()
        if row is None:
            return None
        return Logged(row.route, row.key_id, _load(row.target), _load(row.output))

    def add(self, request_id: str, key_id: str | None, *, item_id: str | None = None, prediction: Any = None,
            correction: Any = None, rating: int | None = None, comment: str | None = None) -> int:
        """Feedback on a request made with the same key; KeyError when there is no such request for this key."""
        with self.engine.begin() as conn:
            owner = conn.execute(
                select(requests_table.c.key_id).where(requests_table.c.request_id == request_id)).first()
            if owner is None or owner.key_id != key_id:
                raise KeyError(request_id)
            values = dict(
                request_id=request_id, created=time.time(), key_id=key_id, item_id=item_id,
                prediction=None if prediction is None else json.dumps(prediction, default=str),
                correction=None if correction is None else json.dumps(correction, default=str),
                rating=rating, comment=comment,
            )
            result = conn.execute(feedback_table.insert().values(**values))
        self.kept_bytes += sum(len(values[c] or "") for c in ("prediction", "correction", "comment"))
        return int(result.inserted_primary_key[0])

    def prune(self, now: float | None = None) -> int:
        """Apply retention (at most once a minute) and the size cap; -> requests deleted."""
        now = time.time() if now is None else now
        deleted = 0
        if self.retention_days is not None and now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            rated = select(feedback_table.c.request_id)
            old = select(requests_table.c.request_id).where(
                requests_table.c.created < now - self.retention_days * 86400, requests_table.c.request_id.not_in(rated))
            deleted += self._delete(old)
        if self.max_bytes is not None and self.kept_bytes > self.max_bytes:
            while self.kept_bytes > PRUNE_TO * self.max_bytes:
                with self.engine.connect() as conn:
                    count = conn.execute(select(func.count()).select_from(requests_table)).scalar() or 0
                if not count:
                    break
                excess = self.kept_bytes - PRUNE_TO * self.max_bytes  # delete about that much, oldest first
                n = max(1, min(1000, math.ceil(excess / (self.kept_bytes / count))))
                deleted += self._delete(select(requests_table.c.request_id).order_by(requests_table.c.created).limit(n))
            log.info("feedback store over its cap of %d bytes: deleted the oldest %d request(s)",
                     self.max_bytes, deleted)
        return deleted

    def _delete(self, ids_query: Any) -> int:
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(ids_query)]
            if ids:
                self.kept_bytes -= self._measure(ids, conn)
                for table in (inputs_table, feedback_table, requests_table):
                    conn.execute(delete(table).where(table.c.request_id.in_(ids)))
        return len(ids)

    def _measure(self, ids: list[str] | None = None, conn: Any = None) -> int:
        """Bytes kept (by the requests ``ids``, or all): media copies, text cells, outputs, feedback text: what the cap counts."""

        def total(table: Table, *columns: str) -> Any:
            lengths = [func.coalesce(func.length(table.c[c]), 0) for c in columns]
            q = select(func.coalesce(func.sum(sum(lengths[1:], lengths[0])), 0))
            return q if ids is None else q.where(table.c.request_id.in_(ids))

        parts = [total(inputs_table, "data", "text"), total(requests_table, "output"),
                 total(feedback_table, "prediction", "correction", "comment")]
        if conn is not None:
            return int(sum(conn.execute(q).scalar() or 0 for q in parts))
        with self.engine.connect() as own:
            return int(sum(own.execute(q).scalar() or 0 for q in parts))

    # -- reading ---------------------------------------------------------------------------
    def feedback(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(select(feedback_table, requests_table.c.route).join(
                requests_table, requests_table.c.request_id == feedback_table.c.request_id), conn)


def _compact(pre: Any, data: bytes, column: str) -> bytes | None:
    if pre is None:
        return None
    try:
        return pre.compact(data)
    except Exception as e:  # noqa: BLE001 - a cell the model read but the copy failed: keep its hash only
        log.warning("could not keep a compact copy of column %r (%s: %s); kept its hash only",
                    column, type(e).__name__, e)
        return None


def _load(value: Any) -> Any:
    """A JSON column's value; None for SQL NULL (None or NaN) and for text that is not JSON (an old or damaged row)."""
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


class Export(NamedTuple):
    frame: pd.DataFrame
    skipped: list[str]  # one line per feedback row left out, and why


def export_training_table(url: str | os.PathLike, out: str | os.PathLike) -> Export:
    """Corrected or confirmed predictions as a training table (Parquet: media cells are bytes).

    The latest feedback per request wins. Search feedback (a rating of a result) becomes
    ``query_*`` columns, ``item_id`` and ``rating``: relevance judgements, not a fit table.
    A row whose label cannot be a target cell (stored by an older server that did not check
    corrections: an object, a list, a label of another type than the others) is left out and
    listed in ``skipped``, so one bad row never costs the export.
    """
    engine = connect(url)
    with engine.connect() as conn:
        fb = pd.read_sql(select(feedback_table).order_by(feedback_table.c.created), conn)
        reqs = pd.read_sql(select(requests_table), conn)
        inputs = pd.read_sql(select(inputs_table.c.request_id, inputs_table.c.column, inputs_table.c.text,
                                    inputs_table.c.number, inputs_table.c.data), conn)
    if fb.empty:
        raise TesseraError(f"no feedback in {database_url(url)}")
    fb = fb.drop(columns=["key_id"]).merge(reqs, on="request_id", how="inner")
    cells: dict[str, dict[str, Any]] = {}
    for row in inputs.itertuples():
        value = row.data if row.data is not None else (row.number if pd.notna(row.number) else row.text)
        cells.setdefault(row.request_id, {})[row.column] = value
    predictions, searches = fb[fb["route"] == "predict"], fb[fb["route"] == "search"]
    records, skipped = [], []
    for rid, group in predictions.groupby("request_id", sort=False):
        last = group.iloc[-1]
        target = _load(last["target"]) or ["label"]
        label = _load(last["correction"])
        if label is None and pd.notna(last["rating"]) and last["rating"] > 0:
            output = _load(last["output"])
            label = _confirmed(output, target) if isinstance(output, dict) else None
        if label is None:
            continue  # a bare dislike says the answer is wrong, not what is right
        targets, why = _target_cells(label, target)
        if why:
            skipped.append(f"request {rid}: {why}")
            continue
        record = dict(cells.get(rid, {}))
        record.update(targets)
        record["request_id"] = rid
        records.append(record)
    records, mixed = _one_type_per_target(records, predictions)
    skipped += mixed
    for rid, group in searches.groupby(["request_id", "item_id"], sort=False, dropna=False):
        last = group.iloc[-1]
        record = {f"query_{k}": v for k, v in cells.get(last["request_id"], {}).items()}
        record.update(request_id=last["request_id"], item_id=last["item_id"], rating=last["rating"])
        records.append(record)
    if not records:
        note = f" ({len(skipped)} row(s) skipped: {skipped[0]})" if skipped else ""
        raise TesseraError("no usable feedback: predictions need a correction or a positive rating, "
                           f"search results a rating{note}")
    frame = pd.DataFrame.from_records(records)
    out = Path(out)
    with atomic_path(out) as tmp:
        if out.suffix.lower() in (".csv", ".tsv"):
            if any(isinstance(v, bytes) for v in frame.to_numpy().ravel()):
                raise TesseraError(f"the feedback holds media bytes; export to Parquet (.parquet), not {out.suffix}")
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return Export(frame, skipped)


def _confirmed(output: dict, target: list[str]) -> Any:
    """The label a liked prediction gave: ``label`` (a regression's ``value``), or its ``labels`` as 0/1 per target column."""
    for name in ("label", "value"):
        if name in output:
            return output[name]
    if isinstance(output.get("labels"), list):
        return {c: int(c in output["labels"]) for c in target}
    return None


def _target_cells(label: Any, target: list[str]) -> tuple[dict[str, Any], str]:
    """({column: value}, "") for a usable label, else ({}, why not)."""
    if isinstance(label, dict):
        if set(label) != set(target) or not all(_scalar(v) for v in label.values()):
            return {}, f"correction {json.dumps(label)[:80]} is not one value per target column {target}"
        return dict(label), ""
    if not _scalar(label):
        return {}, f"correction {json.dumps(label)[:80]} is a {type(label).__name__}, not one label for {target[0]!r}"
    if len(target) != 1:
        return {}, f"correction {label!r} is one value, but the model has {len(target)} target columns {target}"
    return {target[0]: label}, ""


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, bool)) or (isinstance(v, float) and math.isfinite(v))


def _one_type_per_target(records: list[dict], predictions: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """Keep, per target column, the rows whose label has the most common type (a Parquet column holds one type)."""
    targets = {c for t in predictions["target"].dropna() for c in (_load(t) or [])} or {"label"}
    skipped = []
    for column in sorted(targets):
        kinds = [type(r[column]).__name__ for r in records if column in r]
        if len(set(kinds)) < 2:
            continue
        keep = max(dict.fromkeys(kinds), key=kinds.count)  # ties: the earliest row's type
        for r in records:
            if column in r and type(r[column]).__name__ != keep:
                skipped.append(f"request {r['request_id']}: label {r[column]!r} of {column!r} is a "
                               f"{type(r[column]).__name__}; the other labels are {keep}s")
        records = [r for r in records if column not in r or type(r[column]).__name__ == keep]
    return records, skipped
