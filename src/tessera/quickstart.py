"""The main job: train and evaluate a fusion model end to end, and its unimodal baselines.

On AV-MNIST when its raw sources are in the data home (no download here: a first run
must not fetch gigabytes behind the user's back), otherwise on the synthetic set, saying so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from tessera.errors import TesseraError
from tessera.predictor import Predictor
from tessera.prepare import prepare
from tessera.proposal import propose
from tessera.schema import Schema
from tessera.table import read_table
from tessera.train import TrainConfig
from tessera.workflows.compare import model_for_inputs


@dataclass
class RunResult:
    name: str
    inputs: list[str]
    metrics: dict[str, Any]
    seconds: float
    epochs: int


def choose_dataset(console: Console, dataset: str | None = None, **recipe_kwargs: Any):
    from tessera import datasets

    if dataset is not None:
        return datasets.prepare(dataset, download=False, **recipe_kwargs)
    try:
        return datasets.prepare("avmnist", download=False, **recipe_kwargs)
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
    epochs: int = 3,
    max_train_rows: int | None = None,
    baselines: bool = True,
    seed: int = 0,
    towers: bool = True,
    console: Console | None = None,
) -> list[RunResult]:
    """Train the fusion (and the unimodal baselines) on the dataset and print the test scores.

    With ``towers`` and the zoo installed, each input gets the encoder :mod:`tessera.proposal`
    picks (a frozen pretrained tower where one fits, from scratch elsewhere), a line each saying
    why; the towers' features are computed once and cached, so later runs skip that step.
    """
    console = console or Console()
    prepared = choose_dataset(console, dataset)
    schema = Schema.from_dict(prepared.schema)
    console.print(f"[bold]Dataset[/bold] {prepared.name}: {prepared.rows} rows, table {prepared.table_path}")
    model: dict[str, Any] = {"fusion": "concat"}
    if towers:
        table = read_table(prepared.table_path)
        proposal = propose(table.frame, schema, table.base_dir, derive=False)
        if proposal.choices:
            console.print("[bold]Encoders[/bold] (--no-towers: all from scratch):")
            for line in proposal.lines:
                console.print(f"  {line}")
            schema, model["encoders"] = proposal.schema, proposal.encoders
    runs = [("fusion (concat)", list(schema.inputs))]
    if baselines and len(schema.inputs) > 1:
        runs += [(f"{name} only", [name]) for name in schema.inputs]
    train_cfg = {"epochs": epochs, "batch_size": 128, "lr": 2e-3, "seed": seed, "max_train_rows": max_train_rows, "patience": 0}
    t0 = time.perf_counter()
    data = prepare(prepared.table_path, schema, None, TrainConfig.from_dict(train_cfg), encoders=model.get("encoders"))
    pipeline, sources = data.pipeline, data.splits
    console.print(
        f"decoded {', '.join(f'{k} {len(v)}' for k, v in sources.items())} rows once in "
        f"{time.perf_counter() - t0:.1f} s; every model below shares them"
    )
    results = []
    for label, keep in runs:
        console.print(f"[bold]Training[/bold] {label} on inputs {keep}")
        predictor = Predictor(model=model_for_inputs(model, keep), train=train_cfg)
        t0 = time.perf_counter()
        predictor.fit_prepared(pipeline.restrict(keep), sources)
        seconds = time.perf_counter() - t0
        results.append(RunResult(label, keep, predictor.metrics.get("test", {}), seconds, len(predictor.result.history)))
    print_results(console, prepared.name, results)
    return results


def print_results(console: Console, dataset: str, results: list[RunResult]) -> None:
    table = RichTable(title=f"Tessera main job: {dataset}, test split")
    for col in ("model", "inputs", "test accuracy", "macro F1", "epochs", "train s"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.name,
            ", ".join(r.inputs),
            f"{r.metrics.get('accuracy', float('nan')):.4f}",
            f"{r.metrics.get('macro_f1', float('nan')):.4f}",
            str(r.epochs),
            f"{r.seconds:.1f}",
        )
    console.print(table)
