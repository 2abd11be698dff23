"""User feedback, kept with the request it is about, so that it can become training data.

Every prediction and search the server answers is logged (request id, the inputs as the
model saw them, the output); ``POST /v1/feedback`` adds a correction or rating to a
request id. :func:`export_training_table` joins the two into a table ``tessera fit`` reads:
the model's input columns (media as bytes) plus the target column, taken from the
correction, or from the prediction when the user confirmed it (rating > 0). The store is
SQLite by default and anything SQLAlchemy speaks by URL (``postgresql://...``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

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
    event,
    select,
)
from sqlalchemy.engine import Engine

from tessera.errors import TesseraError
from tessera.files import atomic_path

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
    Column("data", LargeBinary),
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
    text = str(value)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def connect(url: str | os.PathLike) -> Engine:
    url = database_url(url)
    sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {})
    if sqlite:

        @event.listens_for(engine, "connect")
        def _wal(conn, _record) -> None:  # readers do not block the server's writes
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across app crashes, one fsync per checkpoint

    metadata.create_all(engine)
    return engine


class FeedbackStore:
    def __init__(self, url: str | os.PathLike) -> None:
        self.engine = connect(url)

    def log_request(self, request_id: str, route: str, key_id: str | None, cells: Mapping[str, Any], output: Any, target: list[str] | None = None) -> None:
        rows = []
        for column, value in cells.items():
            row = {"request_id": request_id, "column": column, "text": None, "number": None, "data": None}
            if isinstance(value, (bytes, bytearray)):
                row["data"] = bytes(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                row["number"] = float(value)
            else:
                row["text"] = str(value)
            rows.append(row)
        with self.engine.begin() as conn:
            conn.execute(
                requests_table.insert().values(
                    request_id=request_id, route=route, created=time.time(), key_id=key_id,
                    target=json.dumps(target) if target else None, output=json.dumps(output, default=str),
                )
            )
            if rows:
                conn.execute(inputs_table.insert(), rows)

    def add(self, request_id: str, key_id: str | None, *, item_id: str | None = None, prediction: Any = None,
            correction: Any = None, rating: int | None = None, comment: str | None = None) -> int:
        with self.engine.begin() as conn:
            known = conn.execute(select(requests_table.c.route).where(requests_table.c.request_id == request_id)).first()
            if known is None:
                raise KeyError(request_id)
            result = conn.execute(
                feedback_table.insert().values(
                    request_id=request_id, created=time.time(), key_id=key_id, item_id=item_id,
                    prediction=None if prediction is None else json.dumps(prediction, default=str),
                    correction=None if correction is None else json.dumps(correction, default=str),
                    rating=rating, comment=comment,
                )
            )
            return int(result.inserted_primary_key[0])

    def feedback(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(select(feedback_table, requests_table.c.route).join(
                requests_table, requests_table.c.request_id == feedback_table.c.request_id), conn)


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else None  # SQL NULL arrives as None or NaN


def export_training_table(url: str | os.PathLike, out: str | os.PathLike) -> pd.DataFrame:
    """Corrected or confirmed predictions as a training table (Parquet: media cells are bytes).

    The latest feedback per request wins. Search feedback (a rating of a result) becomes
    ``query_*`` columns, ``item_id`` and ``rating``: relevance judgements, not a fit table.
    """
    engine = connect(url)
    with engine.connect() as conn:
        fb = pd.read_sql(select(feedback_table).order_by(feedback_table.c.created), conn)
        reqs = pd.read_sql(select(requests_table), conn)
        inputs = pd.read_sql(select(inputs_table), conn)
    if fb.empty:
        raise TesseraError(f"no feedback in {database_url(url)}")
    fb = fb.merge(reqs, on="request_id", how="inner")
    cells: dict[str, dict[str, Any]] = {}
    for row in inputs.itertuples():
        value = row.data if row.data is not None else (row.number if pd.notna(row.number) else row.text)
        cells.setdefault(row.request_id, {})[row.column] = value
    predictions, searches = fb[fb["route"] == "predict"], fb[fb["route"] == "search"]
    records = []
    for rid, group in predictions.groupby("request_id", sort=False):
        last = group.iloc[-1]
        target = _load(last["target"]) or ["label"]
        label = _load(last["correction"])
        if label is None and pd.notna(last["rating"]) and last["rating"] > 0:
            label = _load(last["output"]).get("label")
        if label is None:
            continue  # a bare dislike says the answer is wrong, not what is right
        record = dict(cells.get(rid, {}))
        record[target[0]] = label
        record["request_id"] = rid
        records.append(record)
    for rid, group in searches.groupby(["request_id", "item_id"], sort=False, dropna=False):
        last = group.iloc[-1]
        record = {f"query_{k}": v for k, v in cells.get(last["request_id"], {}).items()}
        record.update(request_id=last["request_id"], item_id=last["item_id"], rating=last["rating"])
        records.append(record)
    if not records:
        raise TesseraError("no usable feedback: predictions need a correction or a positive rating, search results a rating")
    frame = pd.DataFrame.from_records(records)
    out = Path(out)
    with atomic_path(out) as tmp:
        if out.suffix.lower() in (".csv", ".tsv"):
            if any(isinstance(v, bytes) for v in frame.to_numpy().ravel()):
                raise TesseraError(f"the feedback holds media bytes; export to Parquet (.parquet), not {out.suffix}")
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return frame
