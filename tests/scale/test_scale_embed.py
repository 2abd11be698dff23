"""Ray runner for embedding and index building: same vectors as the local runner, on_error, a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from tessera.align import Embedder
from tessera.errors import DataError
from tessera.index.build import index_table
from tessera.scale.embed import build_index_ray, embed_table_ray

def local_vectors(embedder: Embedder, table, name: str) -> dict[int, np.ndarray]:
    out = {}
    for rows, vecs in embedder.embed_table(table, name):
        out.update(zip(rows.tolist(), vecs))
    return out


def test_ray_embedding_matches_local(ray_cluster, embedder, big_table) -> None:
    expected = local_vectors(embedder, big_table, "image")
    got = {}
    for rows, vecs in embed_table_ray(embedder, str(big_table), "image", batch_size=300):
        for r, v in zip(rows.tolist(), vecs):
            assert r not in got
            got[r] = v
    assert sorted(got) == sorted(expected) == list(range(2000))
    np.testing.assert_allclose(np.stack([got[r] for r in range(2000)]), np.stack([expected[r] for r in range(2000)]), atol=1e-5)


@pytest.mark.slow
def test_on_error_skip_reports_and_raise_names_the_row(ray_cluster, embedder, tiny_table, tmp_path) -> None:
    frame = pd.read_csv(tiny_table)
    for r in (7, 40):
        (tiny_table.parent / f"bad{r}.png").write_bytes(b"this is not a PNG")
        frame.loc[r, "image"] = f"bad{r}.png"
    frame.to_csv(tiny_table, index=False)
    result = build_index_ray(embedder, tiny_table, tmp_path / "skip", "image", on_error="skip", batch_size=10)
    assert len(result.index) == 46 and result.counts.added == 46
    assert sorted(e.row for e in result.skipped.rows) == [7, 40]
    assert all(e.file.endswith(f"bad{e.row}.png") and e.column == "image" for e in result.skipped.rows)
    assert "7" not in set(result.index.ids()) and "8" in set(result.index.ids())

    with pytest.raises(DataError, match=r"row (7|40), column 'image', file '.*bad") as info:
        build_index_ray(embedder, tiny_table, tmp_path / "raise", "image", on_error="raise", batch_size=10)
    assert type(info.value) is DataError  # not Ray's wrapper, whose message is a traceback dump
    assert "Traceback" not in str(info.value)


@pytest.mark.slow
def test_ray_index_equals_local_index(ray_cluster, embedder, tiny_table, tmp_path) -> None:
    local = index_table(embedder, tiny_table, tmp_path / "local", "image")
    ray_ = build_index_ray(embedder, tiny_table, tmp_path / "ray", "image", batch_size=10)
    assert ray_.counts.added == 48 and sorted(ray_.index.ids()) == sorted(local.index.ids())
    ids = [str(i) for i in range(48)]
    a, b = local.index.get(ids), ray_.index.get(ids)
    np.testing.assert_allclose(np.stack(a["vector"]), np.stack(b["vector"]), atol=1e-5)
    for col in ("label", "color", "path", "content_hash", "thumbnail"):
        assert a[col].tolist() == b[col].tolist(), col
    again = build_index_ray(embedder, tiny_table, tmp_path / "ray", "image", batch_size=10)  # nothing changed
    assert again.counts.unchanged == 48 and again.counts.added == again.counts.updated == 0


def map_worker_pids(ray) -> list[int]:
    """Ray Data's actor processes of this test's cluster (children of its raylet), never anyone else's."""
    import psutil

    node = ray._private.worker._global_node
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    found = []
    for p in raylet.children(recursive=True):
        try:
            if "MapWorker" in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_killed_worker_still_gives_a_complete_duplicate_free_index(ray_cluster, embedder, big_table, tmp_path) -> None:
    out = tmp_path / "index"
    killed: list[int] = []

    done = threading.Event()  # the killer waits for the first commit as long as the job runs, however slow the machine

    def kill_one_after_first_commit() -> None:
        while not done.is_set():
            versions = out / "vectors.lance" / "_versions"
            if versions.is_dir() and len(list(versions.iterdir())) >= 2:  # created + at least one block written
                pids = map_worker_pids(ray_cluster)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_after_first_commit, daemon=True)
    killer.start()
    try:
        result = build_index_ray(embedder, big_table, out, "image", batch_size=50, thumbnails=False)
    finally:
        done.set()
    killer.join()
    assert killed, "the job ended before a worker could be killed"
    ids = result.index.ids()
    assert len(ids) == len(set(ids)) == 2000
    expected = local_vectors(embedder, big_table, "image")
    got = result.index.get([str(i) for i in range(2000)])
    np.testing.assert_allclose(np.stack(got["vector"]), np.stack([expected[i] for i in range(2000)]), atol=1e-5)
