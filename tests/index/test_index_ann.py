"""The ANN path: past ``ann_threshold`` rows the index builds IVF-flat and keeps Recall@10 >= 0.9."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.index import VectorIndex

DIM = 32


def clustered(n: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres: the shape of real embeddings, where ANN has structure to use."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    v = centres[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(index: VectorIndex, data: np.ndarray, queries: np.ndarray, **knobs) -> float:
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    hits = index.search(queries, k=10, columns=[], **knobs)
    found = hits.groupby("query")["id"].apply(lambda s: {int(i) for i in s})
    return float(np.mean([len(found[q] & set(exact[q].tolist())) / 10 for q in range(len(queries))]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = clustered(2000, clusters=20, seed=0)
    rng = np.random.default_rng(1)
    noise = 0.05 * rng.standard_normal((50, DIM)).astype(np.float32)
    queries = vectors[rng.choice(len(vectors), 50, replace=False)] + noise
    return vectors, queries


def test_crossing_the_threshold_builds_ivf_flat_and_keeps_recall(tmp_path, data):
    vectors, queries = data
    index = VectorIndex.create(tmp_path / "idx", DIM, ann_threshold=1500)
    index.add([str(i) for i in range(1500)], vectors[:1500])
    assert index.ann_kind is None  # at the threshold: still exact
    index.add([str(i) for i in range(1500, 2000)], vectors[1500:])
    assert index.ann_kind == "ivf_flat" and VectorIndex.open(tmp_path / "idx").ann_kind == "ivf_flat"
    assert recall_at_10(index, vectors, queries) >= 0.9


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq", "hnsw"])
def test_explicit_ann_with_few_partitions(tmp_path, data, kind):
    vectors, queries = data
    index = VectorIndex.create(tmp_path / "idx", DIM)
    index.add([str(i) for i in range(len(vectors))], vectors)
    index.build_ann(kind, num_partitions=4)
    assert recall_at_10(index, vectors, queries, nprobes=2) >= 0.9
    index.delete(["0"])
    index.optimize()  # folds the change into the ANN index; deleted rows stay gone
    assert "0" not in set(index.search(vectors[0], k=10)["id"])
