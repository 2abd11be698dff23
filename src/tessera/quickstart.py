"""The main job (`tessera` with no command): does fusion beat each of its inputs alone, on real data?

It trains one model per input and the fusion of all of them under one budget and seed,
compares them paired on held-out rows (:func:`tessera.workflows.compare.compare_models`),
saves the fusion model and an HTML report of it (:mod:`tessera.evaluate`), and says what
the table means and what to run next.

The data is AV-MNIST when its raw sources are in the data home (no download here: a first
run must not fetch gigabytes behind the user's back), otherwise the synthetic set, saying so.
A first run has a budget (issue 18: under 2 minutes on 2 idle cores, under 1.5 GB), so by
default the job builds a small AV-MNIST table of its own (:data:`QUICK`: 4,000 training
pairs instead of 55,000) and trains 3 epochs with a narrow audio CNN; ``full=True``
(``tessera --full``) builds the whole table and trains 10 epochs.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from tessera.errors import TesseraError
from tessera.progress import seconds
from tessera.threads import resolve_threads, torch_threads


@dataclass(frozen=True)
class Budget:
    """How big a main job is: the AV-MNIST recipe's sizes (empty: the recipe's own) and the epochs."""

    rows: dict[str, int] = field(default_factory=dict)
    epochs: int = 3


QUICK = Budget({"n_train": 4_000, "n_val": 500, "n_test": 1_000}, epochs=3)
FULL = Budget({}, epochs=10)  # 55,000 / 5,000 / 10,000 pairs, as MultiBench
AVMNIST_MODEL = {"fusion": "concat", "encoders": {"audio": {"name": "audio_cnn", "options": {"width": 8}}}}
DEFAULT_OUTPUT = Path("runs/main-job")


@dataclass
class MainJob:
    dataset: str
    comparison: Any  # tessera.evaluate.compare.Comparison
    model_path: Path
    report_path: Path
    table_path: Path
    seconds: float


def choose_dataset(console: Console, dataset: str | None, budget: Budget):
    from tessera import datasets

    if dataset is not None:
        return datasets.prepare(dataset, download=False, **(budget.rows if dataset == "avmnist" else {}))
    try:
        return datasets.prepare("avmnist", download=False, **budget.rows)
    except TesseraError as e:
        console.print(f"[yellow]AV-MNIST is not available ({e}).[/yellow]")
        console.print(
            "[yellow]Using the synthetic multimodal set instead. Put the raw sources in the data home "
            "(TESSERA_DATA) or run `tessera data prepare avmnist` to download them.[/yellow]"
        )
        return datasets.prepare("synthetic")


def run_quickstart(
    dataset: str | None = None,
    *,
    full: bool = False,
    epochs: int | None = None,
    max_train_rows: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    output: str | os.PathLike = DEFAULT_OUTPUT,
    towers: bool = True,
    console: Console | None = None,
) -> MainJob:
    """Train, compare, save and report; see the module docstring. Returns what it made and where.

    With ``towers`` and the zoo installed, each input gets the encoder :mod:`tessera.proposal`
    picks (a frozen pretrained tower where one fits, from scratch elsewhere), a line each saying
    why; the towers' features are computed once and cached, so later runs skip that step.
    """
    from tessera.evaluate.report import write_report
    from tessera.evaluate.robustness import missing_curve
    from tessera.evaluate.run import evaluate_split
    from tessera.prepare import prepare
    from tessera.schema import Schema
    from tessera.table import read_table
    from tessera.train import TrainConfig
    from tessera.workflows.compare import compare_models

    console = console or Console()
    start = time.perf_counter()
    budget = FULL if full else QUICK
    output = Path(output)
    n = resolve_threads(threads)
    console.print(f"torch on {n} thread{'s' * (n > 1)} ({_load_note()}; --threads to choose)")
    prepared = choose_dataset(console, dataset, budget)
    schema = Schema.from_dict(prepared.schema)
    rows = ", ".join(f"{k} {v:,}" for k, v in prepared.rows.items())
    console.print(f"[bold]Dataset[/bold] {prepared.name}: {rows} rows ({prepared.table_path})")
    train_cfg = TrainConfig.from_dict({
        "epochs": epochs or budget.epochs, "batch_size": 64, "lr": 2e-3, "seed": seed, "patience": 0 if not full else 3,
        "max_train_rows": max_train_rows, "threads": n,
        # Decoding workers are forked copies of this process: each would count its ~1 GB again.
        "num_workers": None if full else 0,
    })
    model_cfg = copy.deepcopy(AVMNIST_MODEL if prepared.name == "avmnist" else {"fusion": "concat"})
    table = read_table(prepared.table_path)  # read once: the proposal samples it, the report shows its rows
    if towers:
        schema = choose_towers(console, table, schema, model_cfg)
    with torch_threads(n):
        data = prepare(prepared.table_path, schema, None, train_cfg, encoders=model_cfg.get("encoders"))
        comparison = compare_models(
            data.pipeline, data.splits, model_cfg, train_cfg, seed=seed,
            on_model=lambda label, keep: console.print(f"[bold]Training[/bold] {label} ({', '.join(keep)})"),
        )
        fusion = comparison.predictors["fusion"]
        model_path = fusion.save(output / "model")
        t0 = time.perf_counter()
        test = data.splits[comparison.split]
        results = evaluate_split(
            fusion.model, fusion.pipeline, test, table.frame, table.base_dir,
            comparison=comparison, seed=seed, n_examples=8, robustness=full,
            meta={"model": f"fusion ({prepared.name}, main job)", "table": str(prepared.table_path), "split": comparison.split},
        )
        if not full:  # the noise curves would take a sixth of the quick run's budget; `tessera evaluate --report` draws them
            missing = missing_curve(fusion.model, test, fusion.pipeline.target, seed=seed)
            results["robustness"] = {"missing": missing.to_dict(orient="records"), "noise": []}
        _, report_path = write_report(results, output / "report.json")
        console.print(f"evaluated the fusion model (contributions, missing inputs, examples) in {seconds(time.perf_counter() - t0)}")
    job = MainJob(prepared.name, comparison, model_path, report_path, prepared.table_path, time.perf_counter() - start)
    print_results(console, job, train_rows=len(data.splits["train"]), epochs=train_cfg.epochs, full=full)
    return job


def choose_towers(console: Console, table: Any, schema: Any, model_cfg: dict[str, Any]) -> Any:
    """The schema with :mod:`tessera.proposal`'s towers; their encoders go into ``model_cfg`` (said line by line).

    Inputs whose encoder the recipe's model config sets keep it: on AV-MNIST the narrow audio
    CNN is what the main job was measured with, and the zoo's speech embedding, proposed for
    "sounds, not speech" there, took audio alone from ~38 % to 22 % and fusion's gain to noise.
    """
    from tessera.proposal import propose
    from tessera.schema import Schema

    pinned = set(model_cfg.get("encoders", {}))
    free = {n: spec for n, spec in schema.inputs.items() if n not in pinned}
    if not free:
        return schema
    proposal = propose(table.frame, Schema(free, schema.target, schema.task, schema.split, schema.ignore), table.base_dir, derive=False)
    if not proposal.choices:
        return schema
    console.print("[bold]Encoders[/bold] (--no-towers: all from scratch):")
    for line in proposal.lines + [f"{n}: the recipe's {model_cfg['encoders'][n]['name']}" for n in sorted(pinned)]:
        console.print(f"  {line}")
    model_cfg["encoders"] = {**model_cfg.get("encoders", {}), **proposal.encoders}
    inputs = {n: proposal.schema.inputs.get(n, spec) for n, spec in schema.inputs.items()}
    return Schema(inputs, schema.target, schema.task, schema.split, schema.ignore)


def _load_note() -> str:
    try:
        return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return f"{os.cpu_count()} cores"


def print_results(console: Console, job: MainJob, *, train_rows: int, epochs: int, full: bool) -> None:
    """The comparison table, two lines saying what it shows, where things are, and what to try next."""
    comparison = job.comparison
    table = comparison.table
    test_rows = int(table["n"].iloc[0])
    out = RichTable(title=f"Tessera main job: {job.dataset}, {test_rows:,} {comparison.split} rows")
    for col in ("model", "accuracy", "95% CI", "macro F1", "epochs", "train s"):
        out.add_column(col, no_wrap=True)
    for r in table.to_dict(orient="records"):
        name = f"fusion ({' + '.join(r['inputs'].split(', '))})" if r["model"] == "fusion" else r["model"]
        out.add_row(
            name, f"{r['accuracy']:.3f}", f"{r['accuracy_low']:.3f}-{r['accuracy_high']:.3f}",
            f"{r['macro_f1']:.3f}", str(r["epochs"]), f"{r['seconds']:.0f}",
        )
    console.print(out)
    g = comparison.gain
    gain = f"fusion {100 * g['gain']:+.1f} points over {g['baseline']} (95% CI {100 * g['low']:+.1f} to {100 * g['high']:+.1f})"
    if job.dataset == "avmnist":
        subset = "all" if full else "a subset of"
        console.print(
            f"Trained on {subset} AV-MNIST's training pairs ({train_rows:,}, {epochs} epochs"
            + ("" if full else "; `tessera --full` trains on all 55,000, for much longer")
            + f") and tested on {test_rows:,} unseen pairs: {gain}."
        )
        console.print(
            "Each input is weak on purpose: the digit images keep only ~25 % of their pixel variance (PCA) "
            "and the spoken digits are buried in noise at -7 dB, so only fusing both reads the digit well."
        )
    else:
        console.print(f"Trained on {train_rows:,} rows, {epochs} epochs; tested on {test_rows:,} unseen rows: {gain}.")
        console.print("The synthetic label needs the image and the sound together: each input alone can reach 50 % at most.")
    console.print(f"Saved the fusion model to [bold]{job.model_path}[/bold] and its report to [bold]{job.report_path}[/bold] "
                  f"({seconds(job.seconds)} in all).")
    console.print(f"Next: open the report in a browser; evaluate the model on any table with labels, e.g. "
                  f"[bold]tessera evaluate {job.model_path} {job.table_path} --split test[/bold]; "
                  "for your own data see README.md, \"Using it\".")
