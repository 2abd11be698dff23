"""Tables nobody tuned for: does ``preset: best`` beat the best single input and gradient boosting?

For every multimodal table of the shared data (``fashion_products``: photo + title +
categories -> sub-category; ``ham10000_subset``: dermatoscopic photo + age + sex + body
site -> diagnosis, with ``dx_type`` and ``dx_name`` left out as the data README says) and
AV-MNIST (``tessera.datasets.prepare("avmnist")``: digit image + spoken digit), one run of
:func:`tessera.workflows.best.fit_best` trains every candidate model on one split and one
decoded copy of the data, and four arms are read from it, all scored on the table's test rows:

* **best single input**: the best, *on the test rows*, of every model that reads one input
  (a Tessera network per input, a linear model on one input's frozen features; a network on
  an input that preset best's time limit left without one is trained after it, on the same
  splits, outside that limit). Choosing
  it on the test rows flatters the baseline, as ``tessera compare`` does: a gain that
  survives it is not a selection effect.
* **gradient boosting on the tabular columns** (``gbm tabular``: scikit-learn
  HistGradientBoosting on the numeric and categorical columns only); AV-MNIST has none.
* **default fusion**: ``Predictor()``'s default model (concat fusion, default encoders)
  trained with the run's train settings on the same decoded splits, i.e. what
  ``Predictor(train=...).fit(table)`` trains: preset best's ``fusion concat`` member when it
  trained one within its time limit, else trained here after it (outside its budget).
* **preset: best**: the validation-chosen weighted ensemble.

Each arm gets a 95 % percentile-bootstrap interval of its test accuracy, and its paired gain
over the best single input (paired bootstrap over test rows, McNemar's p) from
:mod:`tessera.evaluate`; preset best is also compared paired with gradient boosting.
"Significantly" means the 95 % paired interval excludes zero.

CPU budget (one torch thread, a shared 2-core machine): the training rows are capped
(``--max-train-rows``, default 3,000 for the two photo tables: the frozen towers embed
about 5 rows/s on this machine; 10,000 for AV-MNIST, the issue's reduced budget, with 3
epochs); validation and test rows are all kept. ``--time-limit`` is preset best's budget
per table. The output records the caps, the load average and every wall time.

Summary keys: ``tables`` (how many), ``preset_best_significantly_better`` (tables where
preset best beats the best single input, paired 95 % interval above zero),
``preset_best_significantly_worse`` (tables where it is below the best single input or
gradient boosting).

Run (from the repository root, ~2-3 h on the loaded 2-core machine):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tables.py
  .venv/bin/python benchmarks/tables.py --tables ham10000_subset --max-train-rows 500 --time-limit 600   # a quick look
  # one process per table, then one file with the summary (how results/tables.json was made):
  .venv/bin/python benchmarks/tables.py --tables avmnist --output /tmp/avmnist.json   # ... likewise per table
  .venv/bin/python benchmarks/tables.py --combine /tmp/avmnist.json /tmp/ham10000_subset.json /tmp/fashion_products.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tessera import datasets  # noqa: E402
from tessera.evaluate.metrics import bootstrap_ci  # noqa: E402
from tessera.model import ModelConfig  # noqa: E402
from tessera.predictor import InferenceConfig  # noqa: E402
from tessera.schema import infer_schema  # noqa: E402
from tessera.table import read_table  # noqa: E402
from tessera.train import TrainConfig  # noqa: E402
from tessera.workflows.best import fit_best  # noqa: E402

# table -> where it is, its target, columns left out, training-row cap, epochs
TABLES: dict[str, dict[str, Any]] = {
    "fashion_products": {"target": "subCategory", "ignore": [], "max_train_rows": 3000, "epochs": 10},
    "ham10000_subset": {"target": "dx", "ignore": ["dx_type", "dx_name"], "max_train_rows": 3000, "epochs": 10},
    "avmnist": {"target": "label", "ignore": [], "max_train_rows": 10_000, "epochs": 3},
}
DEFAULT_FUSION = "fusion concat"


def load(name: str) -> tuple[Any, Any, list[str]]:
    """The table, its schema (inferred for the shared tables, the recipe's for AV-MNIST) and the inference notes."""
    spec = TABLES[name]
    if name == "avmnist":
        prepared = datasets.prepare("avmnist", download=False)
        return read_table(prepared.table_path), prepared.schema, ["schema: the avmnist recipe's"]
    path = Path(os.environ["TESSERA_DATA"]) / name / "table.csv"
    table = read_table(path)
    schema, reasons = infer_schema(table.frame, spec["target"], base_dir=table.base_dir, ignore=spec["ignore"])
    notes = [f"{column}: {why}" for column, why in reasons.items()]
    return table, schema, notes


def arm(task: Any, y: np.ndarray, scores: np.ndarray, base: np.ndarray | None, n_boot: int) -> dict[str, Any]:
    """Test accuracy with its bootstrap interval, and the paired gain over ``base`` (scores of the baseline)."""
    main = task.main_metric.metric
    value, low, high = bootstrap_ci(task.metrics()[main], y, scores, n_boot=n_boot, seed=0)
    out: dict[str, Any] = {main: value, f"{main}_low": low, f"{main}_high": high}
    if base is not None:
        gain = task.paired_gain(task.per_row_outcome(y, scores), task.per_row_outcome(y, base), n_boot=n_boot, seed=0)
        out["gain_over_best_single_input"] = gain
    return out


def default_fusion(result: Any, train: TrainConfig) -> tuple[np.ndarray, str, float | None]:
    """Test scores of ``Predictor()``'s default model: preset best's member, else trained now on the same splits."""
    if DEFAULT_FUSION in result.scores:
        return result.scores[DEFAULT_FUSION]["test"], "preset best's member", None
    from tessera.evaluate.metrics import predict_split
    from tessera.predictor import Predictor

    print(f"{DEFAULT_FUSION}: not trained within preset best's time limit; training it now on the same splits", flush=True)
    start = time.perf_counter()
    splits = result.prepared.splits
    predictor = Predictor(model=ModelConfig(), train=train).fit_prepared(result.prepared.pipeline, splits)
    seconds = time.perf_counter() - start
    print(f"{DEFAULT_FUSION}: trained in {seconds:.0f} s", flush=True)
    scores = predict_split(predictor.model, splits["test"], result.ensemble.task)[1]
    return scores, "trained after preset best, outside its time limit", seconds


def missing_single_inputs(result: Any, members: dict[str, Any], train: TrainConfig) -> dict[str, tuple[np.ndarray, float]]:
    """Test scores of a network on each input that preset best left without a one-input network (its time limit),
    trained now on the same splits, so the best single input is chosen among every input."""
    from tessera.evaluate.metrics import predict_split
    from tessera.predictor import Predictor
    from tessera.workflows.compare import model_for_inputs

    pipeline, splits = result.prepared.pipeline, result.prepared.splits
    covered = {str(r["inputs"]) for m, r in members.items() if m in result.scores and r["kind"] == "network"}
    out = {}
    for name in pipeline.preprocessors:
        if name in covered or len(pipeline.preprocessors) == 1:
            continue
        print(f"{name} only: no one-input model within preset best's time limit; training it now on the same splits", flush=True)
        start = time.perf_counter()
        predictor = Predictor(model=model_for_inputs(ModelConfig(), [name]), train=train).fit_prepared(pipeline.restrict([name]), splits)
        out[f"{name} only"] = (predict_split(predictor.model, splits["test"], result.ensemble.task)[1], time.perf_counter() - start)
        print(f"{name} only: trained in {out[f'{name} only'][1]:.0f} s", flush=True)
    return out


def significance(gain: dict[str, Any] | None) -> str:
    if gain is None:
        return "n/a"
    return "better" if gain["low"] > 0 else "worse" if gain["high"] < 0 else "no significant difference"


def run_table(name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = TABLES[name]
    load_start = os.getloadavg()
    start = time.perf_counter()
    table, schema, notes = load(name)
    max_rows = args.max_train_rows if args.max_train_rows is not None else spec["max_train_rows"]
    epochs = args.epochs if args.epochs is not None else spec["epochs"]
    train = TrainConfig(max_train_rows=max_rows, epochs=epochs, num_workers=0)
    inference = InferenceConfig(num_workers=0)
    print(f"\n=== {name}: training rows capped at {max_rows}, {epochs} epochs, preset best limit {args.time_limit:.0f} s", flush=True)
    for line in notes:
        print(f"  {line}")
    result = fit_best(table, schema, spec["target"], ModelConfig(), train, inference, time_limit=args.time_limit,
                      skip_report=None)
    seconds = time.perf_counter() - start
    ensemble, task = result.ensemble, result.ensemble.task
    board = ensemble.leaderboard
    members = {r["model"]: r for r in board.to_dict(orient="records") if r["kind"] != "ensemble"}
    y = result.y["test"]
    main = task.main_metric.metric

    late = missing_single_inputs(result, members, train)
    single = {m: result.scores[m]["test"] for m, r in members.items() if m in result.scores and "," not in str(r["inputs"])}
    single.update({m: scores for m, (scores, _) in late.items()})
    best_single = max(single, key=lambda m: task.main_score(y, single[m]))
    base = single[best_single]
    arms: dict[str, Any] = {}
    arms["best single input"] = {"model": best_single, **arm(task, y, base, None, args.n_boot)}
    if best_single in late:
        arms["best single input"].update(note="trained after preset best, outside its time limit", fit_seconds=late[best_single][1])
    single_scores = {m: task.main_score(y, v) for m, v in single.items()}
    gbm = "gbm tabular" if "gbm tabular" in result.scores else None
    if gbm is None and "gbm" in result.scores and all(ensemble.info["schema"]["inputs"][i]["modality"] in ("numeric", "categorical")
                                                      for i in ensemble.info["schema"]["inputs"]):
        gbm = "gbm"
    arms["gradient boosting (tabular columns)"] = (
        {"model": gbm, **arm(task, y, result.scores[gbm]["test"], base, args.n_boot)} if gbm else {"model": None, "note": "no tabular columns"}
    )
    fusion_scores, fusion_note, fusion_seconds = default_fusion(result, train)
    arms["default fusion"] = {"model": DEFAULT_FUSION, "note": fusion_note, **arm(task, y, fusion_scores, base, args.n_boot)}
    if fusion_seconds is not None:
        arms["default fusion"]["fit_seconds"] = fusion_seconds
    arms["preset best"] = {"model": "ensemble", **arm(task, y, result.scores["ensemble"]["test"], base, args.n_boot)}
    vs_gbm = None
    if gbm:
        vs_gbm = task.paired_gain(task.per_row_outcome(y, result.scores["ensemble"]["test"]),
                                  task.per_row_outcome(y, result.scores[gbm]["test"]), n_boot=args.n_boot, seed=0)
        arms["preset best"]["gain_over_gradient_boosting"] = vs_gbm
    for a in arms.values():  # wall time of what each arm trained (preset best: everything, features included)
        if a.get("model") in members:
            a["fit_seconds"] = members[a["model"]]["fit_seconds"]
    arms["preset best"]["fit_seconds"] = ensemble.info["seconds"]
    versus_single = significance(arms["preset best"]["gain_over_best_single_input"])
    versus_gbm = significance(vs_gbm)
    print(f"\n{name}: test rows {len(y)}, wall {seconds:.0f} s, load average at start {load_start[0]:.1f}, now {os.getloadavg()[0]:.1f}")
    print(board.to_string(index=False))
    print(f"\n{'arm':38s} {'model':30s} {main:>9s} {'95% CI':>15s} {'gain vs best single':>22s}")
    for label, a in arms.items():
        if a.get("model") is None:
            print(f"{label:38s} {'-':30s} {a['note']}")
            continue
        gain = a.get("gain_over_best_single_input")
        g = f"{gain['gain']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]" if gain else ""
        print(f"{label:38s} {a['model']:30s} {a[main]:9.4f} {a[f'{main}_low']:.4f}-{a[f'{main}_high']:.4f} {g:>22s}"
              + (f"  ({a['note']})" if a.get("note") else ""))
    print(f"preset best vs best single input: {versus_single}; vs gradient boosting: {versus_gbm}")
    return {
        "settings": {"max_train_rows": max_rows, "epochs": epochs, "time_limit": args.time_limit,
                     "rows": {s: int(len(v)) for s, v in result.y.items()}},
        "split": result.split_note,
        "schema": ensemble.info["schema"],
        "schema_notes": notes,
        "arms": arms,
        "single_input_test_scores": single_scores,
        "single_inputs_trained_after_preset_best": sorted(late),
        "preset_best_vs_best_single_input": versus_single,
        "preset_best_vs_gradient_boosting": versus_gbm,
        "leaderboard": json.loads(board.to_json(orient="records")),
        "wall_seconds": seconds,
        "preset_best_seconds": ensemble.info["seconds"],
        "load_average_at_start": list(load_start),
        "load_average_at_end": list(os.getloadavg()),
    }


DEFINITIONS = {
    "preset_best_significantly_better": "tables where preset best's paired 95% bootstrap interval of the accuracy gain "
                                        "over the best single input (chosen on the test rows) is above zero",
    "preset_best_significantly_worse": "tables where that interval, or the one against gradient boosting on the "
                                       "tabular columns, is below zero",
    "goal_met": "the issue's goal: preset best significantly worse on no table, significantly better on most",
    "per_table": "test accuracy of each arm; *_gain: preset best (or default fusion) minus the best single input, "
                 "with its paired 95% bootstrap interval",
}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's counts, and per table each arm's test score and the fused arms' paired gains over the best single input."""
    better = sum(r["preset_best_vs_best_single_input"] == "better" for r in results.values())
    worse = sum("worse" in (r["preset_best_vs_best_single_input"], r["preset_best_vs_gradient_boosting"]) for r in results.values())
    per_table = {}
    for name, r in results.items():
        arms, row = r["arms"], {}
        main = next(k for k in arms["preset best"] if k.endswith("_low"))[: -len("_low")]
        for key, label in (("best single input", "best_single_input"), ("gradient boosting (tabular columns)", "gradient_boosting"),
                           ("default fusion", "default_fusion"), ("preset best", "preset_best")):
            a = arms[key]
            row[label] = a.get(main)
            row[f"{label}_model"] = a.get("model")
            gain = a.get("gain_over_best_single_input")
            if gain is not None and label != "gradient_boosting":
                row[f"{label}_gain"] = [gain["gain"], gain["low"], gain["high"]]
        row["metric"] = main
        row["preset_best_vs_best_single_input"] = r["preset_best_vs_best_single_input"]
        row["preset_best_vs_gradient_boosting"] = r["preset_best_vs_gradient_boosting"]
        row["budget"] = r["settings"]
        per_table[name] = row
    return {"tables": len(results), "preset_best_significantly_better": better,
            "preset_best_significantly_worse": worse, "goal_met": worse == 0 and better > len(results) / 2,
            "per_table": per_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--max-train-rows", type=int, default=None, help="Override every table's training-row cap.")
    parser.add_argument("--epochs", type=int, default=None, help="Override every table's epochs.")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="preset best's budget per table, seconds.")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "tables.json")
    parser.add_argument("--combine", nargs="+", type=Path, default=None,
                        help="Train nothing: merge the tables of these earlier outputs (runs split across processes) into one, with its summary.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger("tessera.best").addHandler(handler)
    logging.getLogger("tessera.best").setLevel(logging.INFO)
    print(f"threads {args.threads}, load average {os.getloadavg()}", flush=True)
    start = time.perf_counter()
    if args.combine:
        runs = [json.loads(Path(f).read_text()) for f in args.combine]
        results = {name: r for run in runs for name, r in run["tables"].items()}
        machine = [run["machine"] for run in runs]
        seconds = [run["wall_seconds"] for run in runs]
    else:
        results = {name: run_table(name, args) for name in args.tables}
        machine = {"cpus": os.cpu_count(), "threads": args.threads, "load_average_at_end": list(os.getloadavg()),
                   "python": platform.python_version(), "torch": torch.__version__}
        seconds = time.perf_counter() - start
    summary = summarize(results)
    out = {
        "benchmark": "tables",
        "summary": summary,
        "definitions": DEFINITIONS,
        "tables": results,
        "machine": machine,
        "wall_seconds": seconds,
    }
    print(f"\nsummary: {json.dumps(summary, indent=1)}\nwall {out['wall_seconds']} s; load average {os.getloadavg()}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
