"""VectorIndex on tiny synthetic vectors whose answers are known in advance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.index import VectorIndex

DIM = 8


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def filled(tmp_path) -> tuple[VectorIndex, list[str], np.ndarray]:
    index = VectorIndex.create(tmp_path / "idx", DIM, metadata_schema={"label": pa.string(), "thumbnail": pa.binary()})
    ids = [f"item-{i}" for i in range(30)]
    vectors = unit_vectors(30)
    meta = pd.DataFrame({"label": ["cat", "dog", "bird"] * 10, "thumbnail": [bytes([i]) for i in range(30)]})
    index.add(ids, vectors, meta)
    return index, ids, vectors


def test_nearest_neighbour_of_each_vector_is_itself(filled):
    index, ids, vectors = filled
    hits = index.search(vectors, k=3)
    top = hits[hits["rank"] == 1]
    assert top["id"].tolist() == ids
    assert np.allclose(top["score"], 1.0, atol=1e-5)
    assert list(hits.columns[:4]) == ["query", "id", "score", "rank"]
    assert hits.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_single_query_scores_are_cosine_similarities(filled):
    index, ids, vectors = filled
    query = vectors[4] * 3.0  # cosine ignores length
    hits = index.search(query, k=5)
    assert "query" not in hits.columns and hits["rank"].tolist() == [1, 2, 3, 4, 5]
    expected = vectors @ vectors[4]
    assert hits["id"].tolist() == [ids[i] for i in np.argsort(-expected)[:5]]
    assert np.allclose(hits["score"], np.sort(expected)[::-1][:5], atol=1e-5)
    assert hits.loc[0, "thumbnail"] == bytes([4])


def test_filter_restricts_results(filled):
    index, ids, vectors = filled
    hits = index.search(vectors[0], k=5, filter="label = 'dog'")  # item-0 is a cat
    assert len(hits) == 5 and set(hits["label"]) == {"dog"}
    assert "item-0" not in set(hits["id"])
    assert index.search(vectors[0], k=5, filter="label = 'fish'").empty


def test_k_larger_than_table_returns_every_row(filled):
    index, ids, vectors = filled
    hits = index.search(vectors[0], k=100, columns=["label"])
    assert sorted(hits["id"]) == sorted(ids) and list(hits.columns) == ["id", "score", "rank", "label"]


def test_upsert_replaces_and_inserts_delete_removes(filled):
    index, ids, vectors = filled
    replacement = -vectors[1]
    counts = index.upsert(["item-1", "item-new"], np.stack([replacement, vectors[2]]))
    assert (counts.added, counts.updated) == (1, 1) and len(index) == 31
    got = index.get(["item-1"])
    assert np.allclose(got.loc[0, "vector"], replacement) and got.loc[0, "label"] == "dog"  # metadata kept
    assert index.search(replacement, k=1)["id"].tolist() == ["item-1"]

    assert index.delete(["item-1", "not-there"]) == 1
    assert len(index) == 30 and index.get(["item-1"]).empty
    assert "item-1" not in set(index.search(replacement, k=30)["id"])


def test_add_with_upsert_flag_and_odd_ids(tmp_path):
    index = VectorIndex.create(tmp_path / "idx", DIM)
    vectors = unit_vectors(3)
    index.add(["o'brien", "a,b", "x"], vectors)
    index.add(["o'brien"], vectors[2:], upsert=True)
    assert np.allclose(index.get(["o'brien"]).loc[0, "vector"], vectors[2])
    assert index.get(["x", "a,b", "missing"])["id"].tolist() == ["x", "a,b"]  # order asked, missing left out


def test_reopen_keeps_rows_metadata_and_metric(filled, tmp_path):
    index, ids, vectors = filled
    again = VectorIndex.open(tmp_path / "idx", dim=DIM)
    assert len(again) == 30 and again.metric == "cosine" and again.metadata_columns == ["label", "thumbnail"]
    assert again.search(vectors[7], k=1)["id"].tolist() == ["item-7"]


def test_only_changed_rows_are_re_embedded(tmp_path):
    index = VectorIndex.create(tmp_path / "idx", DIM, metadata_schema={"label": pa.string()})
    ids, vectors = ["a", "b", "c"], unit_vectors(4)
    meta = pd.DataFrame({"label": ["x", "y", "z"]})
    first = index.add_or_update_if_changed(ids, vectors[:3], meta, ["h1", "h2", "h3"])
    assert (first.added, first.updated, first.unchanged) == (3, 0, 0)

    asked = []
    def embed(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        asked.extend(positions.tolist())
        return positions, -vectors[positions], None
    second = index.add_or_update_if_changed([*ids, "d"], embed, None, ["h1", "h2-new", "h3", "h4"])
    assert (second.added, second.updated, second.unchanged) == (1, 1, 2)
    assert asked == [1, 3]  # only the changed and the new row were embedded
    got = index.get(["a", "b"])
    assert np.allclose(got.loc[0, "vector"], vectors[0]) and np.allclose(got.loc[1, "vector"], -vectors[1])
    assert got["content_hash"].tolist() == ["h1", "h2-new"] and got["label"].tolist() == ["x", "y"]

    def embed_all_but_e(positions: np.ndarray) -> tuple[list[int], np.ndarray, pd.DataFrame]:
        kept = [p for p in positions.tolist() if p != 1]  # row "e" cannot be embedded
        return kept, vectors[kept], pd.DataFrame({"label": [f"new-{p}" for p in kept]})
    third = index.add_or_update_if_changed(["a", "e", "f"], embed_all_but_e, None, ["h1-new", "h5", "h6"])
    assert (third.added, third.updated, third.unchanged) == (1, 1, 0)
    assert "e" not in index.ids() and index.get(["a", "f"])["label"].tolist() == ["new-0", "new-2"]


def test_errors_are_clear(filled, tmp_path):
    index, ids, vectors = filled
    with pytest.raises(DataError, match="holds 8-d vectors"):
        index.add(["z"], np.ones((1, 5), np.float32))
    with pytest.raises(DataError, match="holds 8-d vectors"):
        index.search(np.ones(5, np.float32))
    with pytest.raises(DataError, match="already in the index.*item-3"):
        index.add(["item-3", "fresh"], vectors[:2])
    assert len(index) == 30 and index.get(["fresh"]).empty  # nothing written
    with pytest.raises(DataError, match="duplicate id"):
        index.add(["q", "q"], vectors[:2])
    with pytest.raises(DataError, match="all-zero or hold NaN"):
        index.add(["zero"], np.zeros((1, DIM), np.float32))
    with pytest.raises(SchemaError, match="not in the index"):
        index.add(["m"], vectors[:1], pd.DataFrame({"colour": ["red"]}))
    with pytest.raises(TesseraError, match="search failed"):
        index.search(vectors[0], filter="no_such_column = 1")
    with pytest.raises(TesseraError, match="folder does not exist"):
        VectorIndex.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(TesseraError, match="not a Tessera vector index"):
        VectorIndex.open(tmp_path)
    with pytest.raises(TesseraError, match="holds 8-d vectors, but 16-d"):
        VectorIndex.open(tmp_path / "idx", dim=16)
    with pytest.raises(TesseraError, match="already exists"):
        VectorIndex.create(tmp_path / "idx", DIM)
    with pytest.raises(SchemaError, match="reserved"):
        VectorIndex.create(tmp_path / "other", DIM, metadata_schema={"score": pa.float32()})
