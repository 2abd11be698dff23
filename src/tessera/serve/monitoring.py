"""Drift of what the server receives against what the models were trained on.

Three signals, each cheap enough to keep per request:

* missing-modality rate per model input (a camera that stopped sending images);
* numeric feature drift: the incoming mean of each column whose preprocessor keeps training
  statistics (``reference_statistics``: numeric columns), in training standard deviations;
* embedding drift per modality: the distance between the incoming query embeddings
  (a window of the latest ones) and a sample of the indexed collection, as the cosine
  distance between their centroids and the squared MMD with an RBF kernel (bandwidth by
  the median heuristic) -- 0 when the distributions match.

The summary is served at ``/v1/monitor`` (what ``tessera monitor`` prints) and exported
to Prometheus as gauges at every scrape. The embedding reference is read once, at start
(:func:`reference_vectors`).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict, deque
from typing import Any, Iterator, Mapping

import numpy as np

from tessera.media import is_missing

log = logging.getLogger("tessera.serve")
WINDOW = 512
REFERENCE_SAMPLE = 512


class DriftMonitor:
    def __init__(self, predictor_pipeline: Any = None, reference_vectors: Mapping[str, np.ndarray] | None = None) -> None:
        self._lock = threading.Lock()
        self.inputs: dict[str, list[str]] = {}
        self.train_stats: dict[str, tuple[float, float]] = {}
        if predictor_pipeline is not None:
            for name, pre in predictor_pipeline.preprocessors.items():
                self.inputs[name] = list(pre.columns)
                self.train_stats.update(pre.reference_statistics())
        self.reference = {m: np.asarray(v, np.float32) for m, v in (reference_vectors or {}).items() if len(v)}
        self.rows = 0
        self.missing: dict[str, int] = defaultdict(int)
        self.sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # n, sum, sum of squares
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.seen: dict[str, int] = defaultdict(int)

    def observe_row(self, cells: Mapping[str, Any]) -> None:
        """One prediction request's cells (column -> value; absent columns are missing)."""
        with self._lock:
            self.rows += 1
            for name, columns in self.inputs.items():
                if all(is_missing(cells.get(c)) for c in columns):
                    self.missing[name] += 1
            for col in self.train_stats:
                v = cells.get(col)
                if isinstance(v, (int, float)) and not is_missing(v):
                    s = self.sums[col]
                    s[0] += 1
                    s[1] += float(v)
                    s[2] += float(v) ** 2

    def observe_vectors(self, modality: str, vectors: np.ndarray) -> None:
        with self._lock:
            for v in np.asarray(vectors, np.float32):
                self.recent[modality].append(v)
            self.seen[modality] += len(vectors)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            rows = self.rows
            missing = {name: (self.missing[name] / rows if rows else None) for name in self.inputs}
            numeric = {}
            for col, (mean, std) in self.train_stats.items():
                n, s, ss = self.sums[col] if col in self.sums else (0, 0.0, 0.0)
                m = s / n if n else None
                numeric[col] = {
                    "n": n,
                    "train_mean": mean,
                    "train_std": std,
                    "mean": m,
                    "std": float(np.sqrt(max(ss / n - m * m, 0.0))) if n else None,
                    "shift_sd": (m - mean) / std if n else None,
                }
            recent = {m: np.stack(list(q)) for m, q in self.recent.items() if len(q)}
            seen = dict(self.seen)
        embeddings = {}
        for modality in sorted(set(recent) | set(self.reference)):
            entry: dict[str, Any] = {"n": seen.get(modality, 0), "reference_n": len(self.reference.get(modality, ()))}
            if modality in recent and modality in self.reference:
                entry.update(centroid_distance=centroid_distance(recent[modality], self.reference[modality]),
                             mmd2=mmd2(recent[modality], self.reference[modality]))
            embeddings[modality] = entry
        return {"prediction_rows": rows, "missing_rate": missing, "numeric": numeric, "embeddings": embeddings}

    def gauges(self) -> Iterator[tuple[str, str, dict[str, str], float]]:
        """(name, help, labels, value) for every defined figure, for the Prometheus collector."""
        s = self.summary()
        for name, rate in s["missing_rate"].items():
            if rate is not None:
                yield "tessera_drift_missing_rate", "Share of prediction requests without this input", {"input": name}, rate
        for col, st in s["numeric"].items():
            if st["shift_sd"] is not None:
                yield "tessera_drift_numeric_shift_sd", "Incoming mean minus training mean, in training SDs", {"column": col}, st["shift_sd"]
        for modality, e in s["embeddings"].items():
            if "mmd2" in e:
                yield "tessera_drift_embedding_mmd2", "Squared MMD (RBF) of recent query embeddings vs the collection", {"modality": modality}, e["mmd2"]
                yield "tessera_drift_embedding_centroid_distance", "Cosine distance of the centroids of queries and collection", {"modality": modality}, e["centroid_distance"]


def reference_vectors(searcher: Any) -> dict[str, np.ndarray]:
    """Per modality, a sample of the collection's own vectors.

    The indexed input's come from the index; other inputs are embedded from the indexed table.
    """
    if searcher is None:
        return {}
    out: dict[str, np.ndarray] = {}
    ids = searcher.index.ids()
    rng = random.Random(0)
    indexed = searcher.info.get("modality")
    if ids and indexed:
        sample = rng.sample(ids, min(REFERENCE_SAMPLE, len(ids)))
        out[indexed] = np.stack(searcher.index.get(sample, columns=["vector"])["vector"].to_list()).astype(np.float32)
    table = searcher.info.get("table")
    others = {n: m for n, m in searcher.embedder.inputs.items() if m not in out}
    if table and others:
        try:
            from tessera.table import Table, read_table

            t = read_table(table)
            frame = t.frame.sample(n=min(REFERENCE_SAMPLE, len(t.frame)), random_state=0)
            for name, modality in others.items():
                if all(c in frame.columns for c in searcher.embedder.pipeline.preprocessors[name].columns):
                    sample = Table(frame, t.base_dir, t.source)
                    parts = [v for _, v in searcher.embedder.embed_table(sample, name, on_error="skip")]
                    if parts:
                        out[modality] = np.concatenate(parts)
        except Exception as e:  # noqa: BLE001 - drift of these inputs is then reported without a reference
            log.warning("no drift reference from %s: %s", table, e)
    return out


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = a.mean(0), b.mean(0)
    denom = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    return float(1.0 - (ca @ cb) / denom) if denom > 0 else 1.0


def mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Biased squared MMD with an RBF kernel whose bandwidth is the median pairwise distance of the pooled sample."""
    pooled = np.concatenate([a, b]).astype(np.float64)
    sq = (pooled**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    off = d2[~np.eye(len(pooled), dtype=bool)]
    bandwidth = float(np.median(off)) if off.size else 1.0
    k = np.exp(-d2 / (bandwidth if bandwidth > 0 else 1.0))
    n = len(a)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())
