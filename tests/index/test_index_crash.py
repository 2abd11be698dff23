"""Crash safety: a writer killed with SIGKILL leaves whole batches; an interrupted build resumes.

LanceDB commits each write as a new table version in one atomic manifest write, so the
index a crash leaves behind is exactly the index as of the last finished batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import runpy
import signal
import time

import numpy as np
import pytest

from tessera.index import IndexBuilder, VectorIndex

DIM = 256  # 2 MB per batch: the write lasts long enough to be killed inside it
BATCH = 2000
TOTAL = 10 * BATCH  # more than the child can write before it is killed
# The child runs this file through runpy (under this run name), so it needs no importable test package.
CHILD_RUN_NAME = "tessera_index_kill_test_writer"


def expected_vector(ids: list[str]) -> np.ndarray:
    """The vector every writer stores for an id: a pure function of the id, so a reader can check it."""
    n = np.array([int(i) for i in ids], dtype=np.float64)[:, None]
    return np.cos(n * np.linspace(0.001, 0.1, DIM) + np.arange(DIM)).astype(np.float32)


def embed(batch: list[str]) -> tuple[np.ndarray, None]:
    return expected_vector(batch), None


def all_ids() -> list[str]:
    return [f"{n:07d}" for n in range(TOTAL)]


def write_until_killed(path: str, writes_started) -> None:
    """Child process: build the index batch by batch, telling the parent when each LanceDB write starts."""
    index = VectorIndex.open(path)
    lance_add = index._table.add

    def announced_add(*args, **kwargs):
        writes_started.value += 1
        return lance_add(*args, **kwargs)

    index._table.add = announced_add  # lets the parent aim its kill inside LanceDB's write
    IndexBuilder(index, BATCH).build(all_ids(), embed)


def assert_whole_batches(index: VectorIndex) -> int:
    rows = index.get(index.ids(), columns=["vector"])
    assert len(rows) % BATCH == 0, f"{len(rows)} rows: a partial batch survived the crash"
    assert rows["id"].is_unique
    assert np.array_equal(np.stack(rows["vector"].to_numpy()), expected_vector(rows["id"].tolist()))
    return len(rows)


def test_sigkill_mid_write_leaves_whole_batches_and_the_build_resumes(tmp_path):
    path = tmp_path / "idx"
    VectorIndex.create(path, DIM)
    ctx = mp.get_context("spawn")
    writes_started = ctx.Value("i", 0)
    child = ctx.Process(
        target=runpy.run_path,
        args=(__file__,),
        kwargs={"run_name": CHILD_RUN_NAME, "init_globals": {"child_args": (str(path), writes_started)}},
    )
    child.start()
    deadline = time.monotonic() + 60
    while writes_started.value < 4 and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert child.is_alive(), "the writer finished or died before it could be killed"
    time.sleep(np.random.default_rng().uniform(0.0, 0.01))  # land somewhere inside the fourth write
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL

    index = VectorIndex.open(path, dim=DIM)
    survived = assert_whole_batches(index)
    assert 3 * BATCH <= survived < TOTAL

    builder = IndexBuilder(index, BATCH)
    assert len(builder.pending(all_ids())) == TOTAL - survived
    assert builder.build(all_ids(), embed) == TOTAL - survived  # accepts writes after the crash
    assert assert_whole_batches(index) == TOTAL
    assert builder.pending(all_ids()) == []


def test_interrupted_build_resumes_without_duplicates(tmp_path):
    ids = [f"{n:07d}" for n in range(10 * 100)]
    index = VectorIndex.create(tmp_path / "idx", DIM)
    calls = []
    def crash_halfway(batch: list[str]) -> tuple[np.ndarray, None]:
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the sixth batch
        calls.append(batch)
        return embed(batch)
    with pytest.raises(KeyboardInterrupt):
        IndexBuilder(index, 100).build(ids, crash_halfway)
    assert len(index) == 500

    resumed = IndexBuilder(VectorIndex.open(tmp_path / "idx"), 100)
    assert resumed.pending(ids) == ids[500:]
    assert resumed.build(ids, embed) == 500
    rows = resumed.index.get(ids, columns=["vector"])
    assert rows["id"].tolist() == ids
    assert np.array_equal(np.stack(rows["vector"].to_numpy()), expected_vector(ids))
    assert resumed.build(ids, embed) == 0


if __name__ == CHILD_RUN_NAME:  # the writer process of the kill test
    write_until_killed(*child_args)  # noqa: F821 (child_args comes from runpy's init_globals)
