"""Decode + preprocess throughput per modality: Tessera's loader (2 worker processes) vs a plain loop.

What is measured, per modality, on real data from the data home (TESSERA_DATA, default
../shared/data beside the checkout):

* ``tessera_2w``: ``Pipeline.loader(num_workers=2, batch_size=64)`` iterated to the end —
  decoding in 2 worker processes, collation into batches, worker start-up included;
* ``reference``: a plain single-process ``for`` loop calling the very same per-row decode
  (the preprocessors' ``load``) with no DataLoader, no batching, no workers.

Inputs: Flickr8k photos (image, resized/cropped to 224 px, ImageNet normalisation), FSDD
recordings (audio: 16 kHz, 64-band log-mel, 1 s), and AV-MNIST pairs (28 px PNG image +
8 kHz noisy-speech WAV -> 112x112 log-mel, both decoded per row). Each figure is the best
of ``--repeats`` runs (machines here are noisy; the ratio is the figure to read).

Summary keys (items per second): ``<modality>_items_per_s_tessera_2workers``,
``<modality>_items_per_s_reference_loop`` and ``<modality>_speedup`` for modality in
``image_flickr8k``, ``audio_fsdd``, ``avmnist_pair``.

Run: ``.venv/bin/python benchmarks/data_loading.py [--items 4000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")

from tessera import datasets  # noqa: E402
from tessera.pipeline import Pipeline, split_frame  # noqa: E402
from tessera.schema import Schema  # noqa: E402
from tessera.table import Table, read_table  # noqa: E402

CASES = {
    "image_flickr8k": ("flickr8k", {"image": {"modality": "image", "options": {"size": 224}}}, "image"),
    "audio_fsdd": (
        "fsdd",
        {"audio": {"modality": "audio", "options": {"sample_rate": 16000, "n_mels": 64, "max_seconds": 1.0}}},
        None,
    ),
    "avmnist_pair": ("avmnist", None, None),  # the recipe's own image + audio schema
}


def build_case(name: str, items: int) -> tuple[Pipeline, Table]:
    recipe, inputs, dedupe = CASES[name]
    prepared = datasets.prepare(recipe, download=False)
    table = read_table(prepared.table_path)
    frame = table.frame
    if dedupe:
        frame = frame.drop_duplicates(dedupe)  # Flickr8k has 5 captions per photo: decode each photo once
    raw = dict(prepared.schema)
    schema = Schema.from_dict({**raw, "inputs": inputs or raw["inputs"]})
    schema.target = None  # decode only
    schema.task = None
    pipeline = Pipeline.fit(split_frame(frame, schema)["train"], schema)
    frame = frame.iloc[:items]
    return pipeline, Table(frame, table.base_dir, table.source)


def run_reference(pipeline: Pipeline, table: Table) -> float:
    ds = pipeline.dataset(table, with_target=False)
    start = time.perf_counter()
    for i in range(len(ds)):
        _, samples, _, err = ds[i]
        if err is not None:
            raise err
    return len(ds) / (time.perf_counter() - start)


def run_loader(pipeline: Pipeline, table: Table, workers: int) -> float:
    ds = pipeline.dataset(table, with_target=False)
    start = time.perf_counter()
    n = 0
    for batch in pipeline.loader(ds, batch_size=64, num_workers=workers):
        if batch.skipped:
            raise batch.skipped[0]
        n += len(batch)
    assert n == len(ds)
    return n / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=4000, help="rows decoded per modality (Flickr8k has 1000 photos, FSDD 3000 clips)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_loading.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # decoding is per-process; one thread each keeps 2 workers on 2 cores honest

    rows, summary = [], {}
    for name in CASES:
        try:
            pipeline, table = build_case(name, args.items)
        except Exception as e:  # a missing data source skips that modality, loudly
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        ref = max(run_reference(pipeline, table) for _ in range(args.repeats))
        tess = max(run_loader(pipeline, table, workers=2) for _ in range(args.repeats))
        rows.append((name, len(table.frame), ref, tess, tess / ref))
        summary[f"{name}_items_per_s_reference_loop"] = round(ref, 1)
        summary[f"{name}_items_per_s_tessera_2workers"] = round(tess, 1)
        summary[f"{name}_speedup"] = round(tess / ref, 2)

    print(f"\n{'modality':<16} {'items':>6} {'reference loop/s':>17} {'tessera 2 workers/s':>20} {'ratio':>6}")
    for name, n, ref, tess, ratio in rows:
        print(f"{name:<16} {n:>6} {ref:>17.1f} {tess:>20.1f} {ratio:>6.2f}")
    result = {
        "benchmark": "data_loading",
        "summary": summary,
        "settings": {"items": args.items, "repeats": args.repeats, "batch_size": 64, "workers": 2, "torch_threads": 1},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "rows": [dict(zip(("modality", "items", "reference_items_per_s", "tessera_items_per_s", "ratio"), r)) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
