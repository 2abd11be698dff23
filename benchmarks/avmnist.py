"""AV-MNIST: test accuracy, training and inference speed of every fusion strategy and both unimodal baselines.

What is measured, on AV-MNIST prepared by ``tessera.datasets.prepare("avmnist")`` (a PCA-degraded
MNIST digit paired with a spoken FSDD digit buried in ESC-50 noise at -12 dB SNR, given as a
112x112 log-mel; 55,000 train / 5,000 val / 10,000 test pairs, see the dataset card):

* for each strategy in ``tessera.fusion.FUSIONS`` and the ``image_only`` / ``audio_only``
  baselines (the same encoders on ``pipeline.restrict([input])``, concat head), over
  ``--seeds`` training seeds: test accuracy (mean and sample std over seeds), seconds per
  training epoch (the training loop only, not validation), inference samples per second
  (``run_inference`` over ``--inference-rows`` test rows, batch 256, after one untimed
  pass) and the number of parameters. Every split is decoded once and shared by all runs;
  the training subset (``--max-train-rows``) is a fixed seeded sample. Training is the
  library's own loop (AdamW, warmup + cosine, early stopping on validation accuracy,
  the best validation epoch's weights kept), default encoders (image_cnn, audio_cnn).
* missing audio: one model of ``--missing-strategy`` trained with ``modality_dropout``
  (``--missing-dropout``), evaluated with the audio removed from 0/25/50/100 % of the
  test rows (nested, seeded subsets; removed rows get ``present=False``, zeroed data and
  mask), beside the same strategy trained without dropout (seed 0 of the main runs, when
  that strategy is among them) and the image-only accuracy.
* the audio encoder's width: ``audio_only`` again with ``audio_cnn(width=--audio-width-check)``,
  to see whether a narrower audio CNN is much faster and about as accurate.
* published reference figures (MultiBench, Liang et al. 2021): see ``PUBLISHED``; printed
  beside ours when found, otherwise the output and the JSON say they were not found.

Training uses one torch thread by default (``--threads``): on the shared 2-core machine this
was written on, 2 threads made an image-CNN step 0.03-0.5 s instead of a steady 0.045 s
(the second core is often busy), and a 1,200-row trial of the reduced run took 161 s with
2 threads, 97 s with 1.
Timings on a shared machine are noisy; the JSON records the load average at the start.

Summary keys (test accuracy as fractions, means over seeds): ``image_only_accuracy``,
``audio_only_accuracy``, ``late_fusion_accuracy``, ``best_fusion_accuracy``,
``best_fusion_strategy``. The JSON also holds per-strategy details, the settings
(``protocol`` says when a run is a reduced budget rather than the full protocol), the
missing-audio curve, the published table and machine information.

Run (from the repository root):
  .venv/bin/python benchmarks/avmnist.py            # full protocol: all strategies, 3 seeds, 10 epochs, all rows
  .venv/bin/python benchmarks/avmnist.py --reduced  # CI preset (< 2 min on 2 cores) -> results/avmnist_reduced.json
  .venv/bin/python benchmarks/avmnist.py --seeds 1 --epochs 3 --max-train-rows 10000 --strategies late concat image_only
See --help for every option; --model-option / --train-option KEY=JSON pass anything else to
ModelConfig / TrainConfig (e.g. fields other engineers add, such as aux_heads=true).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")

from tessera import datasets  # noqa: E402
from tessera.fusion import FUSIONS  # noqa: E402
from tessera.pipeline import CachedSplit, Pipeline  # noqa: E402
from tessera.predictor import Predictor  # noqa: E402
from tessera.prepare import DataSettings, prepare  # noqa: E402
from tessera.preprocess import ModalityBatch  # noqa: E402
from tessera.train import run_inference  # noqa: E402

BASELINES = {"image_only": ["image"], "audio_only": ["audio"]}
FULL_PROTOCOL = {"seeds": 3, "epochs": 10, "max_train_rows": None}
DEFAULT_AUDIO_WIDTH = 16  # audio_cnn's own default
# CI preset: a small freshly built table, one seed, two epochs, the strategies the summary needs.
REDUCED = {
    "dataset": {"n_train": 800, "n_val": 200, "n_test": 400},
    "seeds": 1,
    "epochs": 2,
    "strategies": ["image_only", "audio_only", "concat", "late"],
}
MISSING_FRACTIONS = (0.0, 0.25, 0.5, 1.0)
# The approximate MultiBench figures our issue quotes ("roughly image-only 65 %, audio-only 42 %,
# late fusion 71 %, the best fusion method there 72-73 %"), printed beside ours and used for the
# goal (best Tessera strategy above 73 %, late fusion at least 71 %) while the exact table is not found.
QUOTED = {"image_only": 0.65, "audio_only": 0.42, "late": 0.71, "best_fusion": 0.73}

# MultiBench's AV-MNIST accuracies, to be filled with exact figures and their source only.
# Searched: the stored copies of arXiv:2107.07502 (readkong, PMC11106632,
# sciencestack, aitopics) and of MultiZoo arXiv:2306.16413 (ar5iv) expose their abstracts and
# first pages only; github.com/pliang279/MultiBench (README.md, datasets/avmnist/README.md,
# examples/multimedia/*) and its website repository (CMU-MultiComp-Lab/multibench) hold no
# accuracy table; its issue tracker quotes other tables (e.g. #43, MuJoCo Push) but not
# AV-MNIST's. So no figure is recorded here rather than one from memory.
PUBLISHED: dict[str, Any] = {
    "found": False,
    "benchmark": "MultiBench (Liang et al., NeurIPS 2021 Datasets and Benchmarks, arXiv:2107.07502)",
    "source": None,
    "figures": {},  # e.g. {"image_only": 0.0, "late": 0.0}: fractions, copied exactly, with "source" set
    "searched": [
        "https://www.readkong.com/page/multimodal-representation-learning-multibench-multiscale-4868073",
        "https://pmc.ncbi.nlm.nih.gov/articles/PMC11106632",
        "https://www.sciencestack.ai/paper/2107.07502",
        "https://ar5iv.labs.arxiv.org/html/2306.16413",
        "https://github.com/pliang279/MultiBench (README.md, datasets/avmnist/README.md, issues)",
        "https://github.com/CMU-MultiComp-Lab/multibench (project website source)",
    ],
    # Not MultiBench's table: users' statements in an issue thread, kept as context only.
    "related_reports": [
        {
            "source": "https://github.com/jperezrua/mfas/issues/17",
            "what": "users report ~65-66 % image-only and ~43 % audio-only (LeNet) on a third-party AV-MNIST "
            "copy, against 75 % image-only and 66 % audio-only that they say the MFAS paper (Perez-Rua et al., "
            "CVPR 2019) reports on its own data",
        },
    ],
}


# -- data ------------------------------------------------------------------------------------------------
def first_rows(split: CachedSplit, n: int) -> CachedSplit:
    return split.subset(torch.arange(len(split)) < n)


def prepare_splits(
    dataset_kwargs: dict, max_train_rows: int | None, max_val_rows: int | None
) -> tuple[Any, Pipeline, dict[str, CachedSplit]]:
    """Build (or reuse) the AV-MNIST table and decode every split once (in worker processes)."""
    prepared = datasets.prepare("avmnist", download=False, **dataset_kwargs)
    torch.set_num_threads(1)  # decoding happens in worker processes, one thread each
    data = prepare(prepared.table_path, prepared.schema, None, DataSettings(max_train_rows=max_train_rows, seed=0))
    pipeline, sources = data.pipeline, data.splits
    if max_val_rows:  # validation only picks the best epoch; the table's rows are already in random order
        sources["val"] = first_rows(sources["val"], max_val_rows)
    return prepared, pipeline, sources


def without_audio(split: CachedSplit, fraction: float, seed: int = 0) -> CachedSplit:
    """A copy of ``split`` whose audio is absent for a seeded ``fraction`` of rows (nested across fractions)."""
    n = len(split)
    gone = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(fraction * n)]
    audio = split.inputs["audio"]
    data, present = audio.data.clone(), audio.present.clone()
    mask = None if audio.mask is None else audio.mask.clone()
    data[gone], present[gone] = 0, False
    if mask is not None:
        mask[gone] = False
    return CachedSplit({**split.inputs, "audio": ModalityBatch(data, present, mask)}, split.target, split.rows)


# -- one training run ------------------------------------------------------------------------------------
def model_config(strategy: str, args: argparse.Namespace, audio_width: int, dropout: float = 0.0) -> dict:
    cfg: dict[str, Any] = {"fusion": "concat" if strategy in BASELINES else strategy, "modality_dropout": dropout}
    inputs = BASELINES.get(strategy, ["image", "audio"])
    if "audio" in inputs:
        cfg["encoders"] = {"audio": {"name": "audio_cnn", "options": {"width": audio_width}}}
    return {**cfg, **args.model_option}


def accuracy(model: torch.nn.Module, split: CachedSplit) -> float:
    out, y, _ = run_inference(model, split, 256, torch.device("cpu"))
    return float((out.argmax(-1) == y).float().mean())


def train_one(strategy: str, seed: int, pipeline: Pipeline, sources: dict, args: argparse.Namespace, *,
              audio_width: int, dropout: float = 0.0) -> tuple[dict, torch.nn.Module]:
    inputs = BASELINES.get(strategy, ["image", "audio"])
    train_cfg = {"epochs": args.epochs, "seed": seed, "device": "cpu", **args.train_option}
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    predictor = Predictor(model=model_config(strategy, args, audio_width, dropout), train=train_cfg)
    predictor.fit_prepared(pipeline.restrict(inputs), sources)
    fit_seconds = time.perf_counter() - start
    model = predictor.model
    timed = first_rows(sources["test"], args.inference_rows)
    run_inference(model, timed, 256, torch.device("cpu"))  # untimed pass: allocator and kernel warm-up
    t0 = time.perf_counter()
    run_inference(model, timed, 256, torch.device("cpu"))
    infer_seconds = time.perf_counter() - t0
    history = predictor.result.history
    run = {
        "seed": seed,
        "test_accuracy": predictor.metrics["test"]["accuracy"],
        "test_macro_f1": predictor.metrics["test"]["macro_f1"],
        "best_val_accuracy": predictor.result.best_metric,
        "best_epoch": predictor.result.best_epoch,
        "epochs_run": len(history),
        "epoch_seconds": statistics.mean(h["epoch_seconds"] for h in history),
        "fit_seconds": fit_seconds,
        "inference_samples_per_s": len(timed) / infer_seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return run, model


def summarise(runs: list[dict]) -> dict:
    accs = [r["test_accuracy"] for r in runs]
    return {
        "accuracy_mean": statistics.mean(accs),
        "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else None,
        "per_seed_accuracy": accs,
        "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
        "inference_samples_per_s": statistics.mean(r["inference_samples_per_s"] for r in runs),
        "params": runs[0]["params"],
        "runs": runs,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- reporting -------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_table(results: dict[str, dict], published: dict) -> None:
    figures = published["figures"] if published["found"] else {}
    print(f"\n{'strategy':<22} {'test acc %':>10} {'± std':>6} {'s/epoch':>8} {'infer/s':>9} {'params':>10} "
          f"{'published %':>12} {'quoted %':>9}")
    for name, r in results.items():
        pub = pct(figures.get(name)) if published["found"] else "n/a"
        print(
            f"{name:<22} {pct(r['accuracy_mean']):>10} {pct(r['accuracy_std']):>6} {r['epoch_seconds']:>8.1f} "
            f"{r['inference_samples_per_s']:>9.0f} {r['params']:>10,} {pub:>12} {pct(QUOTED.get(name)):>9}"
        )
    print(f"{'best MultiBench fusion':<22} {'':>10} {'':>6} {'':>8} {'':>9} {'':>10} {'':>12} "
          f"{'72-73':>9}")
    print("quoted: the approximate MultiBench figures the Tessera issue gives (not an exact published table)")
    if published["found"]:
        print(f"published: {published['benchmark']}, {published['source']}")
    else:
        print(f"published: no exact AV-MNIST figures of {published['benchmark']} were found in the sources searched;"
              " see PUBLISHED in this script (published_found: false).")
        for rep in published["related_reports"]:
            print(f"  related (not MultiBench's table): {rep['what']} [{rep['source']}]")


def print_curve(missing: dict) -> None:
    image_only = pct(missing["image_only_accuracy"])
    print(f"\naudio removed from test rows ({missing['strategy']}; image-only accuracy {image_only} %)")
    print(f"{'audio missing':>14} {'dropout ' + str(missing['modality_dropout']):>14} {'no dropout':>11}")
    for point in missing["curve"]:
        with_dropout, without = pct(point["accuracy"]), pct(point.get("accuracy_no_dropout"))
        print(f"{100 * point['fraction_missing']:>13.0f}% {with_dropout:>14} {without:>11}")


# -- main ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [*BASELINES, *FUSIONS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", nargs="+", choices=names, help=f"default: all ({', '.join(names)})")
    ap.add_argument("--seeds", type=int, help=f"how many training seeds (default {FULL_PROTOCOL['seeds']})")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--merge-with", type=Path, metavar="JSON", action="append", default=[],
                    help="a previous result with the same settings but other seeds (repeatable): its runs join these "
                         "(per strategy), and the first width check and missing-audio curve found are kept instead of "
                         "re-run; with --seeds 0 nothing is trained, the files are only merged")
    ap.add_argument("--skip-extras", action="store_true",
                    help="no width check and no missing-audio curve: for runs of further seeds that are merged later "
                         "into a result that has them (e.g. seeds split over two processes)")
    ap.add_argument("--epochs", type=int, help=f"default {FULL_PROTOCOL['epochs']} (early stopping, patience 3)")
    ap.add_argument("--max-train-rows", type=int, help="a fixed seeded sample of the 55,000 training rows")
    ap.add_argument("--max-val-rows", type=int, help="validate each epoch on the first N of the 5,000 val rows")
    ap.add_argument("--reduced", action="store_true", help="CI preset: 800/200/400-row table, 1 seed, 2 epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1, see the docstring)")
    ap.add_argument("--audio-width", type=int, default=DEFAULT_AUDIO_WIDTH, help="audio_cnn width for every run")
    ap.add_argument("--audio-width-check", type=int, default=8, help="also train audio_only at this width; 0 = skip")
    ap.add_argument("--missing-strategy", default="late", choices=list(FUSIONS))
    ap.add_argument("--missing-dropout", type=float, default=0.3)
    ap.add_argument("--inference-rows", type=int, default=2000, help="test rows timed for inference speed")
    ap.add_argument("--model-option", action="append", default=[], metavar="KEY=JSON", help="extra ModelConfig field")
    ap.add_argument("--train-option", action="append", default=[], metavar="KEY=JSON", help="extra TrainConfig field")
    ap.add_argument("--snr-db", type=float, help="AV-MNIST recipe noise level (default: the recipe's)")
    ap.add_argument("--out", type=Path, help="default benchmarks/results/avmnist.json (avmnist_reduced.json)")
    args = ap.parse_args(argv)

    preset = REDUCED if args.reduced else FULL_PROTOCOL
    args.dataset = dict(REDUCED["dataset"]) if args.reduced else {}
    if args.snr_db is not None:
        args.dataset["snr_db"] = args.snr_db
    args.seeds = preset["seeds"] if args.seeds is None else args.seeds
    if args.seeds < 1 and not args.merge_with:
        ap.error("--seeds 0 only merges: give --merge-with")
    if args.skip_extras:
        args.audio_width_check = 0
    args.epochs = args.epochs or preset["epochs"]
    args.strategies = args.strategies or preset.get("strategies") or names
    if args.reduced:
        args.audio_width_check = 0
    args.out = args.out or REPO / "benchmarks" / "results" / f"avmnist{'_reduced' if args.reduced else ''}.json"
    args.model_option = dict(parse_option(o) for o in args.model_option)
    args.train_option = dict(parse_option(o) for o in args.train_option)
    return args


def parse_option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string, e.g. gradient_modulation=ogm_ge


def protocol(args: argparse.Namespace, n_train: int, full_train: int) -> str:
    differs = []
    if args.reduced:
        differs.append(f"small table {args.dataset}")
    if args.seeds != FULL_PROTOCOL["seeds"]:
        differs.append(f"{args.seeds} seed(s)")
    if n_train < full_train:
        differs.append(f"{n_train:,} of {full_train:,} training rows")
    if args.max_val_rows:
        differs.append(f"validation on {args.max_val_rows:,} of the 5,000 val rows")
    if args.epochs != FULL_PROTOCOL["epochs"]:
        differs.append(f"{args.epochs} epochs")
    if set(args.strategies) != {*BASELINES, *FUSIONS}:
        differs.append(f"strategies {args.strategies}")
    if args.audio_width != DEFAULT_AUDIO_WIDTH:
        differs.append(f"audio_cnn width {args.audio_width} (library default {DEFAULT_AUDIO_WIDTH})")
    if args.model_option or args.train_option:
        differs.append(f"options {args.model_option | args.train_option}")
    full = (f"full protocol: all strategies, {FULL_PROTOCOL['seeds']} seeds, {FULL_PROTOCOL['epochs']} epochs, "
            f"all 55,000 training and 5,000 val rows, audio_cnn width {DEFAULT_AUDIO_WIDTH}")
    return ("reduced budget: " + ", ".join(differs) + f" ({full})") if differs else full


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_at_start = os.getloadavg()

    t0 = time.perf_counter()
    prepared, pipeline, sources = prepare_splits(args.dataset, args.max_train_rows, args.max_val_rows)
    decode_seconds = time.perf_counter() - t0
    rows = {k: len(v) for k, v in sources.items()}
    log(f"decoded {rows} in {decode_seconds:.0f} s")

    previous = load_previous(args, rows, prepared) if args.merge_with else None
    if previous is not None:
        args.audio_width_check = 0  # kept from the previous result
    results: dict[str, dict] = {}
    keep: dict[str, torch.nn.Module] = {}  # seed-0 model of the missing-audio strategy, for its no-dropout curve
    for name in args.strategies:
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run, model = train_one(name, seed, pipeline, sources, args, audio_width=args.audio_width)
            runs.append(run)
            if name == args.missing_strategy and seed == 0:
                keep[name] = model
            log(f"{name} seed {seed}: acc {run['test_accuracy']:.4f}, {run['epoch_seconds']:.1f} s/epoch, "
                f"fit {run['fit_seconds']:.0f} s")
        if previous is not None:
            runs = sorted(previous["strategies"][name]["runs"] + runs, key=lambda r: r["seed"])
        results[name] = summarise(runs)

    width_check = None if previous is None else previous["audio_width_check"]
    if width_check is not None and previous is not None and f"audio_only (width {width_check['width']})" in previous["strategies"]:
        results[f"audio_only (width {width_check['width']})"] = previous["strategies"][f"audio_only (width {width_check['width']})"]
    if args.audio_width_check and args.audio_width_check != args.audio_width:
        width = args.audio_width_check
        runs = [train_one("audio_only", s, pipeline, sources, args, audio_width=width)[0] for s in range(args.seeds)]
        checked = summarise(runs)
        width_check = {"width": args.audio_width_check, "reference_width": args.audio_width, **checked}
        log(f"audio_only width {width}: acc {checked['accuracy_mean']:.4f}, {checked['epoch_seconds']:.1f} s/epoch")
        results[f"audio_only (width {args.audio_width_check})"] = checked

    # Missing audio: a model trained with modality dropout, tested with audio removed from some rows.
    if previous is not None and previous["missing_audio"] is not None:
        missing = {**previous["missing_audio"], "image_only_accuracy": results.get("image_only", {}).get("accuracy_mean")}
    elif args.skip_extras:
        missing = None
    else:
        missing = missing_audio_curve(args, pipeline, sources, results, keep)
    finish(args, started, load_at_start, prepared, rows, decode_seconds, results, width_check, missing)
    return 0


def load_previous(args: argparse.Namespace, rows: dict, prepared: Any) -> dict:
    """The earlier results to merge with, as one, refused unless all were measured under these settings."""
    merged: dict | None = None
    seen: set[int] = set(range(args.first_seed, args.first_seed + args.seeds))
    args.merged_seeds, args.merge_seconds = 0, 0.0
    for path in args.merge_with:
        old = json.loads(path.read_text())
        st = old["settings"]
        same = {
            "rows": (st["rows"], rows),
            "epochs": (st["epochs"], args.epochs),
            "dataset key": (st["dataset"]["key"], prepared.meta.get("key")),
            "audio width": (st["encoders"]["audio"]["options"]["width"], args.audio_width),
            "model options": (st["model_options"], args.model_option),
            "max val rows": (st["max_val_rows"], args.max_val_rows),
        }
        differ = {k: v for k, v in same.items() if v[0] != v[1]}
        if differ:
            raise SystemExit(f"--merge-with {path}: settings differ (old, new): {differ}")
        missing = [n for n in args.strategies if n not in old["strategies"]]
        if missing:
            raise SystemExit(f"--merge-with {path}: it has no runs of {missing}")
        seeds = {r["seed"] for n in args.strategies for r in old["strategies"][n]["runs"]}
        if seeds & seen:
            raise SystemExit(f"--merge-with {path}: seeds {sorted(seeds & seen)} were run already")
        seen |= seeds
        args.merged_seeds += st["seeds"]
        args.merge_seconds += st["wall_seconds"]
        if merged is None:
            merged = old
            continue
        for name in args.strategies:
            merged["strategies"][name]["runs"] += old["strategies"][name]["runs"]
        for key in ("audio_width_check", "missing_audio"):
            if merged[key] is None and old[key] is not None:
                merged[key] = old[key]
                if key == "audio_width_check":
                    name = f"audio_only (width {old[key]['width']})"
                    merged["strategies"][name] = old["strategies"][name]
    assert merged is not None
    return merged


def missing_audio_curve(args: argparse.Namespace, pipeline: Pipeline, sources: dict, results: dict, keep: dict) -> dict:
    run, model = train_one(
        args.missing_strategy, 0, pipeline, sources, args, audio_width=args.audio_width, dropout=args.missing_dropout
    )
    log(f"{args.missing_strategy} + modality dropout {args.missing_dropout}: acc {run['test_accuracy']:.4f}, "
        f"fit {run['fit_seconds']:.0f} s")
    curve = []
    for fraction in MISSING_FRACTIONS:  # 0 % is the ordinary test accuracy, already measured
        test = without_audio(sources["test"], fraction) if fraction else None
        point = {"fraction_missing": fraction, "accuracy": accuracy(model, test) if test else run["test_accuracy"]}
        if args.missing_strategy in keep:
            reference = results[args.missing_strategy]["runs"][0]["test_accuracy"]
            point["accuracy_no_dropout"] = accuracy(keep[args.missing_strategy], test) if test else reference
        curve.append(point)
    return {
        "strategy": args.missing_strategy,
        "modality_dropout": args.missing_dropout,
        "image_only_accuracy": results["image_only"]["accuracy_mean"] if "image_only" in results else None,
        "curve": curve,
        "run": run,
    }


def finish(args, started, load_at_start, prepared, rows, decode_seconds, results, width_check, missing) -> None:
    args.seeds += getattr(args, "merged_seeds", 0)  # a merged result covers the earlier seeds too
    fusions = {k: v for k, v in results.items() if k in FUSIONS}
    best = max(fusions, key=lambda k: fusions[k]["accuracy_mean"]) if fusions else None
    summary = {
        "image_only_accuracy": results["image_only"]["accuracy_mean"] if "image_only" in results else None,
        "audio_only_accuracy": results["audio_only"]["accuracy_mean"] if "audio_only" in results else None,
        "late_fusion_accuracy": results["late"]["accuracy_mean"] if "late" in results else None,
        "best_fusion_accuracy": fusions[best]["accuracy_mean"] if best else None,
        "best_fusion_strategy": best,
    }
    if best and "late" in results:
        summary["goals_met"] = {
            "best_fusion_above_quoted_best_73": summary["best_fusion_accuracy"] > QUOTED["best_fusion"],
            "late_fusion_at_least_quoted_71": summary["late_fusion_accuracy"] >= QUOTED["late"],
        }

    print_table(results, PUBLISHED)
    for goal, ok in summary.get("goals_met", {}).items():
        print(f"goal {goal}: {'PASS' if ok else 'FAIL'}")
    if missing is not None:
        print_curve(missing)
    # What the full protocol would cost here, from this run's speeds: every epoch trains on all
    # 55,000 rows and validates on all 5,000, then the 10,000 test rows are scored once.
    full_train, full_val, full_test = 55_000, 5_000, 10_000
    per_run = [
        FULL_PROTOCOL["epochs"] * (r["epoch_seconds"] * full_train / rows["train"] + full_val / speed)
        + full_test / speed
        for k, r in results.items()
        if k in FUSIONS or k in BASELINES
        for speed in [r["inference_samples_per_s"]]
    ]
    estimate_hours = sum(per_run) * FULL_PROTOCOL["seeds"] / 3600
    print(f"\nwall time {time.perf_counter() - started:.0f} s; the full protocol ({len(per_run)} strategies x "
          f"{FULL_PROTOCOL['seeds']} seeds x {FULL_PROTOCOL['epochs']} epochs x 55,000 rows, audio_cnn width "
          f"{args.audio_width}) would take about {estimate_hours:.1f} h here (no early stopping)")

    result = {
        "benchmark": "avmnist",
        "summary": summary,
        "settings": {
            "protocol": protocol(args, rows["train"], int(prepared.rows.get("train", full_train))),
            "rows": rows,
            "dataset": {"recipe": "avmnist", "kwargs": prepared.meta.get("kwargs"), "key": prepared.meta.get("key")},
            "strategies": args.strategies,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "train_config": {"batch_size": 64, "lr": 1e-3, "patience": 3, **args.train_option},
            "model_options": args.model_option,
            "encoders": {
                "image": {"name": "image_cnn", "options": {}},
                "audio": {"name": "audio_cnn", "options": {"width": args.audio_width}},
            },
            "max_val_rows": args.max_val_rows,
            "torch_threads": args.threads,
            "inference": {"rows": min(args.inference_rows, rows["test"]), "batch_size": 256},
            "decode_seconds": decode_seconds,
            "wall_seconds": time.perf_counter() - started + getattr(args, "merge_seconds", 0.0),
            "estimated_full_protocol_training_hours": estimate_hours,
        },
        "strategies": results,
        "audio_width_check": width_check,
        "missing_audio": missing,
        "published_found": PUBLISHED["found"],
        "published": PUBLISHED,
        "quoted": {"figures": QUOTED, "source": "approximate MultiBench AV-MNIST figures quoted in the Tessera issue"},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
