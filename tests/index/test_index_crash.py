"""Crash safety of an index build: a build killed with SIGKILL leaves whole batches; run again, it resumes.

LanceDB commits each write as a new table version in one atomic manifest write, so the
index a crash leaves behind is exactly the index as of the last finished batch. The build
is the real one (:func:`tessera.index.build.index_table`: plan, per-batch content hashes,
``add_or_update_if_changed``, finish); only the model is a stand-in whose vector is a pure
function of the row, so a reader can check every stored vector and embedding costs nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import runpy
import signal
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tessera.index import VectorIndex
from tessera.index.build import index_table

DIM = 256  # 2 MB per batch: the write lasts long enough to be killed inside it
BATCH = 2000
TOTAL = 10 * BATCH  # more than the child can write before it is killed
# The child runs this file through runpy (under this run name), so it needs no importable test package.
CHILD_RUN_NAME = "tessera_index_kill_test_writer"


def expected_vector(ids: list[str]) -> np.ndarray:
    """The vector every build stores for an id: a pure function of the id, so a reader can check it."""
    n = np.array([int(i) for i in ids], dtype=np.float64)[:, None]
    return np.cos(n * np.linspace(0.001, 0.1, DIM) + np.arange(DIM)).astype(np.float32)


class IdEmbedder:
    """What :func:`index_table` needs of an Embedder: one text input, ``key``, embedded as :func:`expected_vector`."""

    dim = DIM
    inputs = {"key": "text"}
    pipeline = SimpleNamespace(preprocessors={"key": SimpleNamespace(columns=["key"])})

    def __init__(self, interrupt_on_call: int | None = None) -> None:
        self.calls, self.embedded, self.interrupt_on_call = 0, 0, interrupt_on_call

    def resolve_input(self, name: str) -> str:
        return name

    def embed_table(self, table, name: str, **_):
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during this batch
        self.embedded += len(table.frame)
        yield table.frame.index.to_numpy(), expected_vector(table.frame["key"].tolist())


def rows(n: int = TOTAL) -> pd.DataFrame:
    ids = [f"{i:07d}" for i in range(n)]
    return pd.DataFrame({"id": ids, "key": ids})


def write_until_killed(path: str, writes_started) -> None:
    """Child process: build the index batch by batch, telling the parent when each LanceDB write starts."""
    merge = VectorIndex._merge

    def announced_merge(self, table):
        writes_started.value += 1
        return merge(self, table)

    VectorIndex._merge = announced_merge  # in this child only: lets the parent aim its kill inside LanceDB's write
    index_table(IdEmbedder(), rows(), path, "key", batch_size=BATCH)


def assert_whole_batches(index: VectorIndex) -> int:
    stored = index.get(index.ids(), columns=["vector"])
    assert len(stored) % BATCH == 0, f"{len(stored)} rows: a partial batch survived the crash"
    assert stored["id"].is_unique
    assert np.array_equal(np.stack(stored["vector"].to_numpy()), expected_vector(stored["id"].tolist()))
    return len(stored)


def counts(result) -> tuple[int, int, int]:
    return result.counts.added, result.counts.updated, result.counts.unchanged


def test_sigkill_mid_write_leaves_whole_batches_and_the_build_resumes(tmp_path):
    path = tmp_path / "idx"
    ctx = mp.get_context("spawn")
    writes_started = ctx.Value("i", 0)
    child = ctx.Process(
        target=runpy.run_path,
        args=(__file__,),
        kwargs={"run_name": CHILD_RUN_NAME, "init_globals": {"child_args": (str(path), writes_started)}},
    )
    child.start()
    deadline = time.monotonic() + 120
    while writes_started.value < 4 and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert child.is_alive(), "the writer finished or died before it could be killed"
    time.sleep(np.random.default_rng().uniform(0.0, 0.01))  # land somewhere inside the fourth write
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL

    survived = assert_whole_batches(VectorIndex.open(path, dim=DIM))
    assert 3 * BATCH <= survived < TOTAL

    embedder = IdEmbedder()
    resumed = index_table(embedder, rows(), path, "key", batch_size=BATCH)  # the index accepts writes after the crash
    assert counts(resumed) == (TOTAL - survived, 0, survived)
    assert embedder.embedded == TOTAL - survived  # rows already stored were not embedded again
    assert assert_whole_batches(resumed.index) == TOTAL


def test_interrupted_build_resumes_without_duplicates(tmp_path):
    table = rows(1000)
    ids = table["id"].tolist()
    with pytest.raises(KeyboardInterrupt):
        index_table(IdEmbedder(interrupt_on_call=6), table, tmp_path / "idx", "key", batch_size=100)
    assert len(VectorIndex.open(tmp_path / "idx")) == 500

    embedder = IdEmbedder()
    resumed = index_table(embedder, table, tmp_path / "idx", "key", batch_size=100)
    assert counts(resumed) == (500, 0, 500) and embedder.embedded == 500
    stored = resumed.index.get(ids, columns=["vector"])
    assert stored["id"].tolist() == ids
    assert np.array_equal(np.stack(stored["vector"].to_numpy()), expected_vector(ids))
    assert counts(index_table(IdEmbedder(), table, tmp_path / "idx", "key", batch_size=100)) == (0, 0, 1000)


if __name__ == CHILD_RUN_NAME:  # the writer process of the kill test
    write_until_killed(*child_args)  # noqa: F821 (child_args comes from runpy's init_globals)
