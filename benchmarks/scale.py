"""Scaling out on Ray: the local single-process runner vs the Ray runner with 2 workers, one run, same machine.

What is measured, on AV-MNIST prepared by ``tessera.datasets.prepare("avmnist")`` (28x28 digit
PNGs and spoken-digit WAVs stored as bytes in the table; every row decodes a PNG and a WAV
into a 112x112 mel spectrogram):

* **embedding**: both inputs of ``--rows`` rows (the table's 70,000 rows, repeated past that)
  with an untrained ``Embedder.create(pipeline, dim=64)`` (image CNN + audio CNN, 0.55M
  parameters; untrained is enough for throughput: the work per row does not depend on the
  weights). Local: :meth:`Embedder.embed_table` in this process (what ``tessera index
  build`` runs). Ray: :func:`tessera.scale.embed.embed_table_ray`, 2 actors with one model
  each, on a 2-CPU local cluster. Items/s = rows / wall time of the two inputs' jobs, actor
  start-up included (the cluster's own start is reported apart).
* **training**: one epoch of a concat-fusion model on ``--train-rows`` training rows (plus
  ``--val-rows`` validation rows), decoding included: ``Predictor.fit`` vs
  :func:`tessera.scale.train.fit_ray` with 2 Ray Train workers, same seed and global batch.
  The per-epoch train loss of both is recorded (they should agree closely: the CNNs'
  batch normalisation sees half batches on each worker).
* **index writes**: rows/s of the driver's commits (``add_or_update_if_changed``, 512 rows a
  commit), the part of an index build that stays on one machine.

Besides wall time, the CPU seconds of this process and all its descendants (Ray's daemons and
workers, DataLoader workers) are measured for each job. The machine's 2 cores are shared with
other users' jobs (load average recorded, often 4x the cores): the kernel shares CPU per
process, so the Ray runner's three busy processes get a larger slice of a loaded machine than
the local runner's one, and the local runner's two torch threads wait on each other. The
wall-time ratios therefore overstate what 2 workers give on dedicated cores; CPU seconds per
item are the figure that transfers to another machine.

Projection: 100 million items on 16 nodes like this one (2 dedicated cores each), from the
Ray runner's measured CPU seconds per item (its overheads included), assuming linear scaling
across nodes (blocks are independent; nothing is exchanged between actors), and bounded below
by the single driver's index-commit rate.

Summary keys: ``ray_embed_speedup``, ``ray_train_speedup``, ``projected_hours_100m_items_16_nodes``.

Run: ``.venv/bin/python benchmarks/scale.py [--rows 10000] [--train-rows 4000]`` (~10 minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from tessera import datasets  # noqa: E402
from tessera.align import Embedder  # noqa: E402
from tessera.index import VectorIndex  # noqa: E402
from tessera.pipeline import Pipeline  # noqa: E402
from tessera.predictor import Predictor  # noqa: E402
from tessera.schema import Schema  # noqa: E402
from tessera.table import Table  # noqa: E402

NODES, CORES_PER_NODE, ITEMS = 16, 2, 100_000_000  # nodes like this machine


def load_avmnist() -> tuple[pd.DataFrame, dict]:
    prepared = datasets.prepare("avmnist", download=False)
    return pd.read_parquet(prepared.table_path), yaml.safe_load(Path(prepared.schema_path).read_text())


def embed_local(embedder: Embedder, table: Table) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for name in ("image", "audio"):
        n += sum(len(rows) for rows, _ in embedder.embed_table(table, name, batch_size=512))
    return time.perf_counter() - start, n


def embed_ray(embedder: Embedder, table: Table) -> tuple[float, int]:
    from tessera.scale.embed import embed_table_ray

    start, n = time.perf_counter(), 0
    for name in ("image", "audio"):
        n += sum(len(rows) for rows, _ in embed_table_ray(embedder, table, name, batch_size=512, num_actors=2))
    return time.perf_counter() - start, n


class CpuMeter:
    """CPU seconds used by this process and all its descendants (Ray's daemons and workers, DataLoader
    workers) while the block runs, sampled every 0.2 s so processes that exit keep their last reading.

    Wall time on this shared machine depends on how many processes compete for its 2 cores (the
    scheduler shares per process, so 3 Ray processes get more of a busy machine than 1); CPU
    seconds per item do not, which is why the projection uses them.
    """

    def __enter__(self) -> "CpuMeter":
        import psutil

        self._me = psutil.Process()
        self._seen: dict[int, float] = {}
        self._start = self._total()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                self._seen[p.pid] = max(self._seen.get(p.pid, 0.0), t.user + t.system)
            except psutil.Error:
                pass

    def _total(self) -> float:
        self._sample()
        return sum(self._seen.values())

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = self._total() - self._start


def index_write_rate(dim: int, n: int = 20_000, batch: int = 512) -> float:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        index = VectorIndex.create(Path(folder) / "index", dim, metadata_schema=None)
        start = time.perf_counter()
        for s in range(0, n, batch):
            ids = [str(i) for i in range(s, min(n, s + batch))]
            index.add_or_update_if_changed(ids, vectors[s : s + batch], None, ["h"] * len(ids))
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000, help="rows to embed (both inputs each)")
    ap.add_argument("--train-rows", type=int, default=4_000)
    ap.add_argument("--val-rows", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    frame, schema_raw = load_avmnist()
    schema = Schema.from_dict({"inputs": schema_raw["inputs"]})
    rows = pd.concat([frame] * (args.rows // len(frame) + 1), ignore_index=True).iloc[: args.rows]
    table = Table(rows[["image", "audio"]].reset_index(drop=True), None, "avmnist")
    pipeline = Pipeline.fit(frame[frame["split"] == "train"].iloc[:5000], schema)
    torch.manual_seed(0)
    embedder = Embedder.create(pipeline, dim=64)

    train_frame = pd.concat([
        frame[frame["split"] == "train"].iloc[: args.train_rows],
        frame[frame["split"] == "val"].iloc[: args.val_rows],
    ], ignore_index=True)
    model_cfg = {"fusion": "concat", "dim": 64}
    train_cfg = {"epochs": 1, "batch_size": 64, "seed": 0, "patience": 0}

    # Local first, before Ray starts, so its daemons neither compete nor count.
    print(f"local runner: embedding {args.rows} AV-MNIST rows (image + audio each), untrained 64-d embedder")
    with CpuMeter() as cpu:
        local_s, n_local = embed_local(embedder, table)
    local_embed_cpu = cpu.seconds
    print(f"local runner: one epoch on {args.train_rows} rows (+{args.val_rows} validation), decoding included")
    with CpuMeter() as cpu:
        t0 = time.perf_counter()
        local_pred = Predictor(model=model_cfg, train=train_cfg).fit(train_frame, schema=schema_raw)
        local_train_s = time.perf_counter() - t0
    local_train_cpu = cpu.seconds

    import ray

    from tessera.scale.train import fit_ray

    with CpuMeter() as cpu:
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        cluster_start = time.perf_counter() - t0
        after_start = cpu._total()
        print("ray runner (2 workers): embedding")
        ray_s, n_ray = embed_ray(embedder, table)
        after_embed = cpu._total()
        print("ray runner (2 workers): one epoch")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as storage:
            ray_pred = fit_ray(Predictor(model=model_cfg, train=train_cfg), train_frame, schema_raw, num_workers=2, storage=storage)
        ray_train_s = time.perf_counter() - t0
    ray_embed_cpu = after_embed - after_start  # the cluster's start is a one-off, reported apart
    ray_train_cpu = cpu.seconds - (after_embed - cpu._start)
    ray.shutdown()
    assert n_local == n_ray == 2 * args.rows, (n_local, n_ray)

    embed = {
        "rows": args.rows,
        "local_seconds": local_s, "local_items_per_s": args.rows / local_s, "local_cpu_seconds": local_embed_cpu,
        "ray_seconds": ray_s, "ray_items_per_s": args.rows / ray_s, "ray_cpu_seconds": ray_embed_cpu,
        "ray_cluster_start_seconds": cluster_start,
    }
    train = {
        "train_rows": args.train_rows, "val_rows": args.val_rows,
        "local_seconds": local_train_s, "local_items_per_s": args.train_rows / local_train_s, "local_cpu_seconds": local_train_cpu,
        "ray_seconds": ray_train_s, "ray_items_per_s": args.train_rows / ray_train_s, "ray_cpu_seconds": ray_train_cpu,
        "local_epoch_loop_seconds": local_pred.result.history[0]["epoch_seconds"],
        "ray_epoch_loop_seconds": ray_pred.result.history[0]["epoch_seconds"],
        "local_train_loss": local_pred.result.history[0]["train_loss"],
        "ray_train_loss": ray_pred.result.history[0]["train_loss"],
        "local_val_accuracy": local_pred.result.history[0].get("val_accuracy"),
        "ray_val_accuracy": ray_pred.result.history[0].get("val_accuracy"),
    }
    print(f"\n{'':24}{'wall s':>9}{'items/s':>10}{'CPU s':>9}{'CPU ms/item':>13}")
    for what, d, n in (("embedding", embed, args.rows), ("training epoch", train, args.train_rows)):
        for runner in ("local", "ray"):
            label = f"{what}, {runner if runner == 'local' else 'ray x2'}"
            print(f"{label:24}{d[runner + '_seconds']:9.1f}{d[runner + '_items_per_s']:10.1f}{d[runner + '_cpu_seconds']:9.1f}"
                  f"{1000 * d[runner + '_cpu_seconds'] / n:13.2f}")
        print(f"{'':24}ratio local/ray wall: {d['local_seconds'] / d['ray_seconds']:.2f}x")
    print(f"training loss after the epoch: local {train['local_train_loss']:.4f}, ray {train['ray_train_loss']:.4f}; "
          f"epoch loop alone: local {train['local_epoch_loop_seconds']:.1f} s, ray {train['ray_epoch_loop_seconds']:.1f} s")

    write_rate = index_write_rate(embedder.dim)
    ray_cpu_per_item = embed["ray_cpu_seconds"] / args.rows  # Ray's overheads (daemons, actor start-up) included
    embed_hours = ITEMS * ray_cpu_per_item / (NODES * CORES_PER_NODE) / 3600
    write_hours = ITEMS / write_rate / 3600
    projected = max(embed_hours, write_hours)
    projection = {
        "items": ITEMS, "nodes": NODES, "cores_per_node": CORES_PER_NODE,
        "ray_cpu_seconds_per_item": ray_cpu_per_item,
        "local_cpu_seconds_per_item": embed["local_cpu_seconds"] / args.rows,
        "embed_hours": embed_hours,
        "index_write_rows_per_s": write_rate,
        "index_write_hours": write_hours,
        "bound_by": "embedding" if embed_hours >= write_hours else "the driver's index commits (one writer)",
        "embed_hours_on_16_core_nodes": ITEMS * ray_cpu_per_item / (NODES * 16) / 3600,
        "assumes": "dedicated cores, linear scaling across nodes (blocks are independent), one driver writing the index",
    }
    print(
        f"\nprojection, {ITEMS:,} items on {NODES} nodes of {CORES_PER_NODE} dedicated cores: embedding "
        f"{embed_hours:.1f} h ({1000 * ray_cpu_per_item:.2f} CPU-ms per item under Ray), index commits {write_hours:.1f} h "
        f"at {write_rate:,.0f} rows/s -> {projected:.1f} h, bound by {projection['bound_by']}; "
        f"on 16-core nodes embedding alone would take {projection['embed_hours_on_16_core_nodes']:.1f} h"
    )
    result = {
        "summary": {
            "ray_embed_speedup": local_s / ray_s,
            "ray_train_speedup": local_train_s / ray_train_s,
            "projected_hours_100m_items_16_nodes": projected,
        },
        "embedding": embed,
        "training": train,
        "projection": projection,
        "machine": {
            "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": torch.__version__, "ray": ray.__version__,
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
        },
        "notes": (
            "untrained embedder (throughput only); local runner uses its defaults (torch threads = cores, "
            "decoding workers for training), Ray workers 1 thread each on a 2-CPU local cluster; the machine's "
            "2 cores are shared with other jobs"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
