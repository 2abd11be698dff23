"""AV-MNIST: test accuracy, training and inference speed of fusion strategies and both unimodal baselines.

What is measured, on AV-MNIST prepared by ``tessera.datasets.prepare("avmnist")`` (a PCA-degraded
MNIST digit paired with a spoken FSDD digit buried in ESC-50 noise at -7 dB SNR, given as a
112x112 log-mel; 55,000 train / 5,000 val / 10,000 test pairs, see the dataset card):

* for each strategy in ``tessera.fusion.FUSIONS`` and the ``image_only`` / ``audio_only``
  baselines (the same encoders on ``pipeline.restrict([input])``, concat head), over
  ``--seeds`` training seeds: test accuracy (mean and sample std over seeds), seconds per
  training epoch (the training loop only, not validation), **training samples per
  CPU-second** (rows x epochs run over ``time.process_time()`` of the whole fit: training,
  validation each epoch and the choice of the answer, not decoding or test scoring),
  inference samples per second (``run_inference`` over ``--inference-rows`` test rows,
  batch 256, after one untimed pass) and the number of parameters. Every split is decoded
  once and shared by all runs; the training subset (``--max-train-rows``) is a fixed seeded
  sample. Training is the library's own loop with its defaults (AdamW, warmup + cosine to
  zero at the end of the budget, early stopping that waits for every input, the best
  validation epoch's weights kept, per-input aux heads, the fused answer checked against
  each input's head on validation) and the default encoders (image_cnn, audio_cnn v2).
* missing audio: one model of ``--missing-strategy`` trained with ``modality_dropout``
  (``--missing-dropout``), evaluated with the audio removed from 0/25/50/100 % of the
  test rows (nested, seeded subsets; removed rows get ``present=False``, zeroed data and
  mask), beside the same strategy trained without dropout (seed 0 of the main runs, when
  that strategy is among them) and the image-only accuracy.
* the reference: MultiBench's own code (its ``avmnist_simple_late_fusion.py`` LeNets + MLP
  and ``Supervised_Learning`` loop, on CPU) trained on these same decoded tensors (dataset key
  4171a299d2f36d18) at the same budget (10,000 training rows, 3 epochs, scored on the same
  10,000 test pairs), as measured by the author of Tessera's issue 15 (``MULTIBENCH``). They
  are measurements on this data, not published numbers; printed beside ours.

Budgets (``--budget``): ``multibench`` is the reference's (10,000 training rows, 3 epochs,
3 seeds, validation on 2,000 of the 5,000 val rows) and writes ``results/avmnist.json``;
``full`` is the full protocol (all 55,000 training rows, up to 30 epochs, 3 seeds; give
``--seeds 1`` when time is short, the JSON says so) and writes ``results/avmnist_full.json``,
which a later ``multibench`` run reports beside its own table, with its wall time.
``--reduced`` is the CI preset (a small freshly built table, < 2 min on 2 cores).

Training uses one torch thread by default (``--threads``): on the shared 2-core machine this
was written on, 2 threads made an image-CNN step 0.03-0.5 s instead of a steady 0.045 s.
CPU seconds are the process's, so they hold under load better than wall time does, though a
loaded machine still slows each step (caches, hyperthreads); the JSON records the load average.

Summary keys (test accuracy as fractions, means over seeds): ``best_fusion_accuracy``,
``best_fusion_strategy``, ``audio_only_accuracy``, ``image_only_accuracy``,
``late_fusion_accuracy``, ``train_rows``, ``epochs``, ``train_samples_per_cpu_s`` (of the
best fusion strategy) and ``targets`` (issue 15's: best fusion above 85 %, audio only at
least 60 %, at least 1.5x MultiBench's 140 training samples per CPU-second).

Run (from the repository root):
  .venv/bin/python benchmarks/avmnist.py --budget multibench   # ~1 h of CPU -> results/avmnist.json
  .venv/bin/python benchmarks/avmnist.py --budget full --seeds 1 --strategies concat   # -> results/avmnist_full.json
  .venv/bin/python benchmarks/avmnist.py --reduced              # CI preset -> results/avmnist_reduced.json
See --help for every option; --model-option / --train-option KEY=JSON pass anything else to
ModelConfig / TrainConfig (e.g. aux_heads=false, fusion_fallback=false).
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
from tessera.model import ModelConfig  # noqa: E402
from tessera.pipeline import CachedSplit, Pipeline  # noqa: E402
from tessera.predictor import Predictor  # noqa: E402
from tessera.prepare import DataSettings, prepare  # noqa: E402
from tessera.preprocess import ModalityBatch  # noqa: E402
from tessera.train import TrainConfig, run_inference  # noqa: E402

BASELINES = {"image_only": ["image"], "audio_only": ["audio"]}
FULL_PROTOCOL = {"seeds": 3, "epochs": 30, "max_train_rows": None, "max_val_rows": None}
BUDGETS = {
    # MultiBench's measured budget: the same 10,000 training rows and 3 epochs; the fusion
    # strategies that do best here (all of them: --strategies, or --budget full's list).
    "multibench": {
        "seeds": 3, "epochs": 3, "max_train_rows": 10_000, "max_val_rows": 2_000,
        "strategies": ["image_only", "audio_only", "concat", "late", "gated", "hybrid", "low_rank_tensor"],
    },
    "full": FULL_PROTOCOL,
}
# CI preset: a small freshly built table, one seed, two epochs, the strategies the summary needs.
REDUCED = {
    "dataset": {"n_train": 800, "n_val": 200, "n_test": 400},
    "seeds": 1,
    "epochs": 2,
    "strategies": ["image_only", "audio_only", "concat", "late"],
}
MISSING_FRACTIONS = (0.0, 0.25, 0.5, 1.0)
# MultiBench's code on Tessera's AV-MNIST tensors, as issue 15 reports it (measured, not published).
MULTIBENCH = {
    "label": "MultiBench's code, measured on this data by the issue's author, same budget",
    "budget": "10,000 training rows, 3 epochs; batch 40, SGD lr 0.1 (weight decay 1e-4), gradient-norm clip 8, "
              "no schedule, best-validation checkpoint; scored on the same 10,000 test pairs",
    "dataset_key": "4171a299d2f36d18",
    "figures": {
        "best_fusion": {"accuracy": 0.814, "per_seed": [0.828, 0.800, 0.813],
                        "what": "LeNet features concatenated + MLP (avmnist_simple_late_fusion.py)"},
        "audio_only": {"accuracy": 0.600, "per_seed": [0.585, 0.616],
                       "what": "LeNet: conv5x5 6 ch + BN + ReLU + pool, then 5 blocks conv3x3 doubling channels; 222k params"},
        "image_only": {"accuracy": 0.629, "per_seed": None, "what": "LeNet 3 ch"},
    },
    "train_samples_per_cpu_s": 140,  # one process alternating both towers, 3 rounds; ~12 M multiply-adds per sample
    "source": "Tessera issue 15 (`issues show 15`), 'What was measured'",
}
# Issue 15's targets at the MultiBench budget.
TARGETS = {"best_fusion_above": 0.85, "audio_only_at_least": 0.60, "samples_per_cpu_s_at_least": 1.5 * 140}


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
def model_config(strategy: str, args: argparse.Namespace, dropout: float = 0.0) -> dict:
    cfg: dict[str, Any] = {"fusion": "concat" if strategy in BASELINES else strategy, "modality_dropout": dropout}
    inputs = BASELINES.get(strategy, ["image", "audio"])
    if "audio" in inputs and args.audio_width:
        cfg["encoders"] = {"audio": {"name": "audio_cnn", "options": {"width": args.audio_width}}}
    return {**cfg, **args.model_option}


def accuracy(model: torch.nn.Module, split: CachedSplit) -> float:
    out, y, _ = run_inference(model, split, 256, torch.device("cpu"))
    return float((out.argmax(-1) == y).float().mean())


def train_one(strategy: str, seed: int, pipeline: Pipeline, sources: dict, args: argparse.Namespace, *,
              dropout: float = 0.0) -> tuple[dict, Predictor]:
    inputs = BASELINES.get(strategy, ["image", "audio"])
    train_cfg = {"epochs": args.epochs, "seed": seed, "device": "cpu", **args.train_option}
    torch.set_num_threads(args.threads)
    predictor = Predictor(model=model_config(strategy, args, dropout), train=train_cfg)
    fit_sources = {k: v for k, v in sources.items() if k != "test"}  # test scoring is not training
    start, cpu_start = time.perf_counter(), time.process_time()
    predictor.fit_prepared(pipeline.restrict(inputs), fit_sources)
    cpu_seconds, fit_seconds = time.process_time() - cpu_start, time.perf_counter() - start
    model = predictor.model
    test = predictor.metrics_on(sources["test"])
    timed = first_rows(sources["test"], args.inference_rows)
    run_inference(model, timed, 256, torch.device("cpu"))  # untimed pass: allocator and kernel warm-up
    t0 = time.perf_counter()
    run_inference(model, timed, 256, torch.device("cpu"))
    infer_seconds = time.perf_counter() - t0
    result = predictor.result
    history = result.history
    run = {
        "seed": seed,
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "best_val_accuracy": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs_run": len(history),
        "stopped_early": result.stopped_early,
        "val_accuracy_by_epoch": [h.get("val_accuracy") for h in history],
        "output": result.output,  # the answer chosen on validation (fused, an input's head, a blend)
        "epoch_seconds": statistics.mean(h["epoch_seconds"] for h in history),
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": cpu_seconds,
        "train_samples_per_cpu_s": len(sources["train"]) * len(history) / cpu_seconds,
        "inference_samples_per_s": len(timed) / infer_seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return run, predictor


def summarise(runs: list[dict]) -> dict:
    accs = [r["test_accuracy"] for r in runs]
    return {
        "accuracy_mean": statistics.mean(accs),
        "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else None,
        "per_seed_accuracy": accs,
        "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
        "train_samples_per_cpu_s": statistics.mean(r["train_samples_per_cpu_s"] for r in runs),
        "inference_samples_per_s": statistics.mean(r["inference_samples_per_s"] for r in runs),
        "params": runs[0]["params"],
        "runs": runs,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- reporting -------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def reference_for(name: str, best_fusion: str | None) -> dict | None:
    figures = MULTIBENCH["figures"]
    return figures.get("best_fusion") if name == best_fusion else figures.get(name)


def print_table(results: dict[str, dict], best_fusion: str | None, full: dict | None, same_budget: bool) -> None:
    """``same_budget``: this run used MultiBench's rows and epochs, so its figures may stand in our rows."""
    print(f"\n{'strategy':<18} {'test acc %':>10} {'± std':>6} {'per seed %':<18} {'s/epoch':>8} {'samples/CPU-s':>13} "
          f"{'infer/s':>8} {'params':>9}  {'MultiBench %':>12}")
    for name, r in results.items():
        ref = reference_for(name, best_fusion) if same_budget else None
        seeds = " ".join(pct(a) for a in r["per_seed_accuracy"])
        print(
            f"{name:<18} {pct(r['accuracy_mean']):>10} {pct(r['accuracy_std']):>6} {seeds:<18} {r['epoch_seconds']:>8.1f} "
            f"{r['train_samples_per_cpu_s']:>13.0f} {r['inference_samples_per_s']:>8.0f} {r['params']:>9,}  "
            f"{pct(ref['accuracy']) if ref else '':>12}"
        )
    figures = MULTIBENCH["figures"]
    print(f"MultiBench reference: {MULTIBENCH['label']} ({MULTIBENCH['budget']}): fusion {pct(figures['best_fusion']['accuracy'])} % "
          f"({figures['best_fusion']['what']}), audio only {pct(figures['audio_only']['accuracy'])} %, image only "
          f"{pct(figures['image_only']['accuracy'])} %, {MULTIBENCH['train_samples_per_cpu_s']} training samples per CPU-second. "
          + ("The MultiBench column stands beside our best fusion and the baselines." if same_budget else
             "This run's budget differs, so the MultiBench column is left empty: compare with a multibench-budget run."))
    if full is not None:
        print(f"full protocol ({full['protocol']}): " + ", ".join(
            f"{name} {pct(r['accuracy_mean'])} % (epochs run {[x['epochs_run'] for x in r['runs']]}, "
            f"{r['train_samples_per_cpu_s']:.0f} samples/CPU-s)" for name, r in full["strategies"].items()
        ) + f"; wall time {full['wall_seconds'] / 3600:.2f} h ({full['file']})")


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
    ap.add_argument("--budget", choices=list(BUDGETS), default="full",
                    help="multibench: 10,000 rows, 3 epochs, 3 seeds (-> avmnist.json); full: 55,000 rows, up to 30 epochs "
                         "(-> avmnist_full.json). Default full")
    ap.add_argument("--strategies", nargs="+", choices=names, help="default: the budget's list, else all")
    ap.add_argument("--seeds", type=int, help="how many training seeds (default: the budget's)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--merge-with", type=Path, metavar="JSON", action="append", default=[],
                    help="a previous result with the same settings but other seeds (repeatable): its runs join these "
                         "(per strategy), and the first missing-audio curve found is kept instead of re-run; with "
                         "--seeds 0 nothing is trained, the files are only merged")
    ap.add_argument("--skip-extras", action="store_true",
                    help="no missing-audio curve: for runs of further seeds that are merged later into a result that has it")
    ap.add_argument("--epochs", type=int, help="default: the budget's (early stopping may end a run sooner)")
    ap.add_argument("--max-train-rows", type=int, help="a fixed seeded sample of the 55,000 training rows")
    ap.add_argument("--max-val-rows", type=int, help="validate each epoch on the first N of the 5,000 val rows")
    ap.add_argument("--reduced", action="store_true", help="CI preset: 800/200/400-row table, 1 seed, 2 epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1, see the docstring)")
    ap.add_argument("--audio-width", type=int, help="audio_cnn width for every run (default: the library's)")
    ap.add_argument("--missing-strategy", default="late", choices=list(FUSIONS))
    ap.add_argument("--missing-dropout", type=float, default=0.3)
    ap.add_argument("--inference-rows", type=int, default=2000, help="test rows timed for inference speed")
    ap.add_argument("--model-option", action="append", default=[], metavar="KEY=JSON", help="extra ModelConfig field")
    ap.add_argument("--train-option", action="append", default=[], metavar="KEY=JSON", help="extra TrainConfig field")
    ap.add_argument("--snr-db", type=float, help="AV-MNIST recipe noise level (default: the recipe's)")
    ap.add_argument("--out", type=Path, help="default results/avmnist.json (multibench), avmnist_full.json, avmnist_reduced.json")
    args = ap.parse_args(argv)

    preset = REDUCED if args.reduced else BUDGETS[args.budget]
    args.dataset = dict(REDUCED["dataset"]) if args.reduced else {}
    if args.snr_db is not None:
        args.dataset["snr_db"] = args.snr_db
    args.seeds = preset["seeds"] if args.seeds is None else args.seeds
    if args.seeds < 1 and not args.merge_with:
        ap.error("--seeds 0 only merges: give --merge-with")
    args.epochs = args.epochs or preset["epochs"]
    for key in ("max_train_rows", "max_val_rows"):
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key))
    args.strategies = args.strategies or preset.get("strategies") or names
    stem = "avmnist_reduced" if args.reduced else {"multibench": "avmnist", "full": "avmnist_full"}[args.budget]
    args.out = args.out or REPO / "benchmarks" / "results" / f"{stem}.json"
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
    """What this run is, said against the budget it was asked for and against the full protocol."""
    differs = []
    if args.reduced:
        differs.append(f"small table {args.dataset}")
    if n_train < full_train:
        differs.append(f"{n_train:,} of {full_train:,} training rows")
    if args.max_val_rows:
        differs.append(f"validation on {args.max_val_rows:,} of the 5,000 val rows")
    if args.epochs != FULL_PROTOCOL["epochs"]:
        differs.append(f"{args.epochs} epochs")
    if args.seeds != FULL_PROTOCOL["seeds"]:
        differs.append(f"{args.seeds} seed(s)")
    if set(args.strategies) != {*BASELINES, *FUSIONS}:
        differs.append(f"strategies {args.strategies}")
    if args.audio_width:
        differs.append(f"audio_cnn width {args.audio_width}")
    if args.model_option or args.train_option:
        differs.append(f"options {args.model_option | args.train_option}")
    full = (f"full protocol: all strategies, {FULL_PROTOCOL['seeds']} seeds, up to {FULL_PROTOCOL['epochs']} epochs, "
            "all 55,000 training and 5,000 val rows, the library's default encoders")
    budget = "the CI preset" if args.reduced else f"budget {args.budget}"
    return (f"{budget}, reduced: " + ", ".join(differs) + f" ({full})") if differs else full


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
    results: dict[str, dict] = {}
    keep: dict[str, torch.nn.Module] = {}  # seed-0 model of the missing-audio strategy, for its no-dropout curve
    for name in args.strategies:
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run, predictor = train_one(name, seed, pipeline, sources, args)
            runs.append(run)
            if name == args.missing_strategy and seed == 0:
                keep[name] = predictor.model
            chosen = run["output"]["chosen"] if run["output"] else "-"
            log(f"{name} seed {seed}: acc {run['test_accuracy']:.4f}, {run['epochs_run']} epochs, answer {chosen}, "
                f"{run['train_samples_per_cpu_s']:.0f} samples/CPU-s, fit {run['fit_seconds']:.0f} s")
        if previous is not None:
            runs = sorted(previous["strategies"][name]["runs"] + runs, key=lambda r: r["seed"])
        results[name] = summarise(runs)

    # Missing audio: a model trained with modality dropout, tested with audio removed from some rows.
    if previous is not None and previous["missing_audio"] is not None:
        missing = {**previous["missing_audio"], "image_only_accuracy": results.get("image_only", {}).get("accuracy_mean")}
    elif args.skip_extras or args.budget == "full" and not args.reduced:
        missing = None
    else:
        missing = missing_audio_curve(args, pipeline, sources, results, keep)
    finish(args, started, load_at_start, prepared, rows, decode_seconds, results, missing)
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
            "audio width": (st["audio_width"], args.audio_width),
            "model options": (st["model_options"], args.model_option),
            "train options": (st["train_options"], args.train_option),
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
        if merged["missing_audio"] is None and old["missing_audio"] is not None:
            merged["missing_audio"] = old["missing_audio"]
    assert merged is not None
    return merged


def missing_audio_curve(args: argparse.Namespace, pipeline: Pipeline, sources: dict, results: dict, keep: dict) -> dict:
    run, predictor = train_one(args.missing_strategy, 0, pipeline, sources, args, dropout=args.missing_dropout)
    model = predictor.model
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


def full_protocol_result(args: argparse.Namespace) -> dict | None:
    """The full-protocol run's result (results/avmnist_full.json), reported beside a multibench-budget run."""
    path = args.out.parent / "avmnist_full.json"
    if args.reduced or args.budget != "multibench" or not path.is_file():
        return None
    full = json.loads(path.read_text())
    return {
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "protocol": full["settings"]["protocol"],
        "wall_seconds": full["settings"]["wall_seconds"],
        "strategies": {n: {k: r[k] for k in ("accuracy_mean", "per_seed_accuracy", "train_samples_per_cpu_s", "runs")}
                       for n, r in full["strategies"].items()},
    }


def finish(args, started, load_at_start, prepared, rows, decode_seconds, results, missing) -> None:
    args.seeds += getattr(args, "merged_seeds", 0)  # a merged result covers the earlier seeds too
    fusions = {k: v for k, v in results.items() if k in FUSIONS}
    best = max(fusions, key=lambda k: fusions[k]["accuracy_mean"]) if fusions else None
    summary = {
        "best_fusion_accuracy": fusions[best]["accuracy_mean"] if best else None,
        "best_fusion_strategy": best,
        "audio_only_accuracy": results["audio_only"]["accuracy_mean"] if "audio_only" in results else None,
        "image_only_accuracy": results["image_only"]["accuracy_mean"] if "image_only" in results else None,
        "late_fusion_accuracy": results["late"]["accuracy_mean"] if "late" in results else None,
        "train_rows": rows["train"],
        "epochs": args.epochs,
        "train_samples_per_cpu_s": fusions[best]["train_samples_per_cpu_s"] if best else None,
    }
    if best and "audio_only" in results:
        summary["targets"] = {
            "best_fusion_above_85": summary["best_fusion_accuracy"] > TARGETS["best_fusion_above"],
            "audio_only_at_least_60": summary["audio_only_accuracy"] >= TARGETS["audio_only_at_least"],
            "samples_per_cpu_s_at_least_210": summary["train_samples_per_cpu_s"] >= TARGETS["samples_per_cpu_s_at_least"],
        }
    full = full_protocol_result(args)

    same_budget = rows["train"] == BUDGETS["multibench"]["max_train_rows"] and args.epochs == BUDGETS["multibench"]["epochs"]
    print_table(results, best, full, same_budget)
    for goal, ok in summary.get("targets", {}).items():
        print(f"target {goal}: {'PASS' if ok else 'FAIL'}")
    if missing is not None:
        print_curve(missing)
    wall = time.perf_counter() - started + getattr(args, "merge_seconds", 0.0)
    print(f"\nwall time {wall:.0f} s ({wall / 3600:.2f} h), {args.seeds} seed(s), {rows['train']:,} training rows, "
          f"up to {args.epochs} epochs")

    result = {
        "benchmark": "avmnist",
        "summary": summary,
        "settings": {
            "protocol": protocol(args, rows["train"], int(prepared.rows.get("train", 55_000))),
            "budget": "reduced (CI)" if args.reduced else args.budget,
            "rows": rows,
            "dataset": {"recipe": "avmnist", "kwargs": prepared.meta.get("kwargs"), "key": prepared.meta.get("key")},
            "strategies": args.strategies,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "train_config": TrainConfig.from_dict(args.train_option).to_dict(),
            "train_options": args.train_option,
            "model_config": ModelConfig.from_dict(args.model_option).to_dict(),
            "model_options": args.model_option,
            "audio_width": args.audio_width,
            "max_val_rows": args.max_val_rows,
            "torch_threads": args.threads,
            "inference": {"rows": min(args.inference_rows, rows["test"]), "batch_size": 256},
            "decode_seconds": decode_seconds,
            "wall_seconds": wall,
        },
        "strategies": results,
        "missing_audio": missing,
        "multibench_reference": MULTIBENCH,
        "full_protocol": full,
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
