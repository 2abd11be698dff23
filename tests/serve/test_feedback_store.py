"""The feedback store keeps what retraining needs, bounded, owner-only; feedback belongs to the key that made the request."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.serve.test_app import assert_problem, image_bytes


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_is_created_owner_only_and_tightened_if_open(tmp_path) -> None:
    from tessera.serve.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "f.db")
    store.log_request("r1", "predict", "k", {"caption": "x"}, {"label": 1})
    assert mode(tmp_path / "f.db") == 0o600
    assert mode(tmp_path / "f.db-wal") == 0o600  # SQLite gives its side files the database's mode
    os.chmod(tmp_path / "f.db", 0o644)
    FeedbackStore(tmp_path / "f.db")
    assert mode(tmp_path / "f.db") == 0o600


def test_uploads_are_kept_as_compact_copies_with_their_hash(built, make_client, tmp_path) -> None:
    """A PNG with 9.5 MB appended is answered, but what is kept is the image alone, re-encoded, plus the upload's hash."""
    from sqlalchemy import select

    from tessera.serve.feedback import FeedbackStore, inputs_table

    client, headers = make_client()
    upload = image_bytes(built) + os.urandom(9_500_000)
    r = client.post("/v1/predict", files={"image": ("x.png", upload, "image/png")}, data={"caption": "a red square"}, headers=headers)
    assert r.status_code == 200, r.text
    store = FeedbackStore(tmp_path / "feedback.db")
    with store.engine.connect() as conn:
        rows = {row.column: row for row in conn.execute(select(inputs_table))}
    kept = rows["image"]
    assert kept.sha256 == hashlib.sha256(upload).hexdigest() and kept.size == len(upload)
    assert len(kept.data) < 5_000, len(kept.data)
    original, copy = Image.open(io.BytesIO(image_bytes(built))), Image.open(io.BytesIO(kept.data))
    assert copy.format == "PNG" and copy.size == original.size
    assert copy.convert("RGB").tobytes() == original.convert("RGB").tobytes()  # lossless from a lossless source
    assert rows["caption"].text == "a red square"
    assert store.kept_bytes < 10_000


def test_large_images_are_kept_at_twice_the_model_size(make_client, tmp_path) -> None:
    from tessera.preprocess import create_preprocessor

    pre = create_preprocessor("image", ["image"], size=64)
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(buf, "JPEG", quality=90, exif=Image.Exif())
    copy = Image.open(io.BytesIO(pre.compact(buf.getvalue())))
    assert copy.format == "JPEG" and max(copy.size) == 256 and copy.size == (256, 192)
    assert not copy.info.get("exif")


def test_the_store_stays_under_its_cap_and_drops_unrated_requests_after_retention(tmp_path) -> None:
    from tessera.serve.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "f.db", max_bytes=50_000, retention_days=1)
    text = "x" * 1000
    for i in range(200):
        store.log_request(f"r{i}", "predict", "k", {"caption": text}, {"label": 1}, ["label"])
        assert store.kept_bytes <= 50_000 + 2_000
    assert store.request("r0") is None and store.request("r199") is not None  # the oldest went first
    kept = len(store.feedback()) + sum(store.request(f"r{i}") is not None for i in range(200))
    assert 20 < kept < 60
    store.add("r199", "k", rating=1)
    deleted = store.prune(now=time.time() + 2 * 86400)
    assert deleted >= 1 and store.request("r198") is None
    assert store.request("r199") is not None  # rated: kept past retention (until the cap needs the room)
    assert store.kept_bytes == store._measure()


def test_feedback_on_another_keys_request_is_refused(built, make_client, keys_file) -> None:
    from tessera.serve.auth import KeyStore

    client, headers = make_client()
    other = {"X-API-Key": KeyStore(keys_file[0]).add("other")[1]}
    pred = client.post("/v1/predict", json={"inputs": {"caption": "a red square"}}, headers=headers).json()
    r = client.post("/v1/feedback", json={"request_id": pred["request_id"], "correction": 2}, headers=other)
    assert_problem(r, 404, "no prediction or search", "for this key")
    assert client.post("/v1/feedback", json={"request_id": pred["request_id"], "correction": 2}, headers=headers).status_code == 201


@pytest.mark.parametrize(
    ("correction", "words"),
    [({"a": 1}, "one label"), ([1, 2], "one label"), (9, "not seen in training"), ("2", "not seen in training"),
     (1.5, "not seen in training"), (True, "not seen in training")],
)
def test_corrections_are_checked_against_the_models_target(make_client, correction, words) -> None:
    client, headers = make_client()
    pred = client.post("/v1/predict", json={"inputs": {"caption": "a red square"}}, headers=headers).json()
    r = client.post("/v1/feedback", json={"request_id": pred["request_id"], "correction": correction}, headers=headers)
    body = assert_problem(r, 422, "correction", words)
    assert body["type"].endswith("/invalid_correction")


def test_search_feedback_rates_one_of_its_own_results(make_client) -> None:
    client, headers = make_client()
    search = client.post("/v1/search", json={"query": [{"input": "text", "text": "a red square"}], "k": 2}, headers=headers).json()
    rid, hit = search["request_id"], search["results"][0]["id"]
    assert_problem(client.post("/v1/feedback", json={"request_id": rid, "item_id": hit, "correction": 1}, headers=headers), 422, "rating")
    assert_problem(client.post("/v1/feedback", json={"request_id": rid, "item_id": "nope", "rating": 1}, headers=headers), 422, "not one of")
    assert_problem(client.post("/v1/feedback", json={"request_id": rid, "rating": 1, "prediction": "x" * 5000}, headers=headers), 413)
    assert client.post("/v1/feedback", json={"request_id": rid, "item_id": hit, "rating": 1}, headers=headers).status_code == 201


def test_export_skips_old_bad_rows_with_a_message(built, make_client, tmp_path) -> None:
    """Rows an older server stored unchecked (an object, a list, a label of another type) are listed and left out."""
    from sqlalchemy import update

    from tessera.cli import app
    from tessera.serve.feedback import FeedbackStore, feedback_table

    client, headers = make_client()
    rids = []
    for i, correction in enumerate([3, 2, 1, 0, 1]):
        pred = client.post("/v1/predict", json={"inputs": {"caption": f"a red square {i}"}}, headers=headers).json()
        assert client.post("/v1/feedback", json={"request_id": pred["request_id"], "correction": correction}, headers=headers).status_code == 201
        rids.append(pred["request_id"])
    store = FeedbackStore(tmp_path / "feedback.db")
    with store.engine.begin() as conn:  # what the old server let through
        for rid, bad in zip(rids[1:4], [{"a": 1}, [1, 2], "two"]):
            conn.execute(update(feedback_table).where(feedback_table.c.request_id == rid).values(correction=json.dumps(bad)))
    out = tmp_path / "fb.parquet"
    r = CliRunner().invoke(app, ["feedback", "export", str(tmp_path / "feedback.db"), str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.count("skipped request") == 3, r.output
    assert f'request {rids[1]}: correction {{"a": 1}} is not one value per target column' in r.output
    assert f"request {rids[2]}: correction [1, 2] is a list" in r.output
    assert "label 'two' of 'label' is a str; the other labels are ints" in r.output
    table = pd.read_parquet(out)
    assert list(table["request_id"]) == [rids[0], rids[4]] and list(table["label"]) == [3, 1]
