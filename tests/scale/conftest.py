"""One 2-CPU local Ray cluster per xdist worker, and tables big enough to split.

Starting a cluster costs seconds on an idle machine and minutes on a loaded one (issue 18: under
``stress-ng --cpu 2`` the suite's first ~95 % took ~20 of its 64 minutes; the rest was the Ray
tests, which started one cluster per module and worker). So the cluster is session-scoped. One cluster for both workers would need
``--dist loadgroup``, which pytest-xdist 3.8 cannot apply under pytest 9 (it renames
``item._nodeid``, which pytest 9 no longer reads).
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from tessera.align import Embedder  # noqa: E402
from tessera.pipeline import Pipeline  # noqa: E402
from tessera.scale.runner import init_ray  # noqa: E402
from tessera.schema import Schema  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    # Ray's memory monitor kills workers when the whole machine is above 95 % memory, which on a
    # machine shared with other jobs says nothing about these tiny tests (issue 18: they failed
    # under load, "workers were killed due to the node running low on memory"); off for them.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    init_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)  # retried when a loaded machine starts it slowly
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """An untrained image + caption embedder: the tests compare runners, not retrieval quality."""
    inputs = {  # as in the root conftest's TINY_SCHEMA
        "image": {"modality": "image", "options": {"size": 16}},
        "caption": {"modality": "text", "options": {"max_length": 12, "vocab_size": 200, "min_frequency": 1}},
    }
    schema = Schema.from_dict({"inputs": inputs})
    fit_rows = pd.DataFrame({"image": ["a.png", "b.png"], "caption": ["a red square today", "a blue square at night"]})
    pipeline = Pipeline.fit(fit_rows, schema)
    torch.manual_seed(0)
    return Embedder.create(pipeline, dim=16, encoder_dim=32)


@pytest.fixture
def big_table(tiny_table):
    """2,000 rows cycling through the tiny table's rows (same media files), as Parquet beside them."""
    frame = pd.read_csv(tiny_table)
    big = pd.concat([frame] * (2000 // len(frame) + 1), ignore_index=True).iloc[:2000]
    big["caption"] = big["caption"] + " " + big.index.astype(str)
    out = tiny_table.parent / "big.parquet"
    big.to_parquet(out, index=False)
    return out
