"""Command-line entry points for evaluation: `tessera evaluate`, `tessera compare`, `tessera report`.

Plain typer-annotated functions, wired into the main app by :func:`register` (which
replaces the old metrics-only `evaluate` command). Output goes to a rich console; errors
are Tessera errors, which the main entry point prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table as RichTable

console = Console()


def register(app: typer.Typer) -> None:
    """Add the three commands to the main app."""
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
    app.command("report")(report_command)


def evaluate_command(
    model: Path = typer.Argument(..., help="A saved model folder."),
    table: Path = typer.Argument(..., help="A table with the target column(s)."),
    split: Optional[str] = typer.Option(None, help="Only rows of this split (train/val/test) of the schema's split column."),
    group: list[str] = typer.Option([], "--group", "-g", help="A column to break metrics down by (repeatable)."),
    report: Optional[Path] = typer.Option(
        None, help="Write the full evaluation (contribution, robustness, examples) to this JSON and an HTML report beside it."
    ),
    n_boot: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals (0: none)."),
    alpha: float = typer.Option(0.05, help="1 - confidence level of the intervals."),
    seed: int = typer.Option(0, help="Seed of the bootstrap and the simulated corruptions."),
) -> None:
    """Task metrics of a saved model with bootstrap confidence intervals; --report for everything else."""
    from tessera.evaluate.report import write_report
    from tessera.evaluate.run import evaluate_predictor
    from tessera.predictor import Predictor

    predictor = Predictor.load(model)
    full = report is not None
    results = evaluate_predictor(
        predictor, table, split=split, group_columns=group, model_name=str(model),
        n_boot=n_boot, alpha=alpha, seed=seed, contribution=full, robustness=full, n_examples=8 if full else 0,
    )
    print_summary(results, title=f"evaluation of {model} on {table}")
    print_fairness(results)
    if report is not None:
        json_path, html_path = write_report(results, report)
        console.print(f"wrote [bold]{json_path}[/bold] and [bold]{html_path}[/bold]")


def compare_command(
    config: Path = typer.Argument(..., help="A fit config (YAML with data, model and train sections)."),
    report: Optional[Path] = typer.Option(None, help="Also evaluate the fusion model fully and write this JSON and an HTML report."),
    group: list[str] = typer.Option([], "--group", "-g", help="With --report: a column to break metrics down by (repeatable)."),
    n_boot: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    seed: int = typer.Option(0, help="Seed of the bootstrap (training uses the config's train.seed)."),
) -> None:
    """Train the unimodal baselines and the fusion model under one config; is fusion's gain real?"""
    from tessera.config import load_fit_config, resolve_data
    from tessera.evaluate.report import write_report
    from tessera.evaluate.run import evaluate_split
    from tessera.pipeline import CachedSplit, cache_split
    from tessera.prepare import prepare
    from tessera.table import read_table
    from tessera.workflows.compare import compare_models

    cfg = load_fit_config(config)
    table, schema = resolve_data(cfg)
    prepared = prepare(table, schema, cfg.data.get("target"), cfg.train, encoders=cfg.model.encoders)
    pipeline, sources = prepared.pipeline, prepared.splits
    comparison = compare_models(
        pipeline, sources, cfg.model, cfg.train, n_boot=n_boot, seed=seed,
        on_model=lambda label, keep: console.print(f"[bold]training[/bold] {label} on {keep}"),
    )
    print_comparison(comparison.to_dict())
    if report is not None:
        t = read_table(table)
        fusion = comparison.predictors["fusion"]
        split = sources[comparison.split]
        if not isinstance(split, CachedSplit):  # train.cache: false streams; the analyses need tensors
            split = cache_split(pipeline, split.dataset)
        results = evaluate_split(
            fusion.model, fusion.pipeline, split, t.frame, t.base_dir,
            group_columns=group, comparison=comparison, n_boot=n_boot, seed=seed,
            meta={"model": f"fusion ({config})", "table": t.source, "split": comparison.split},
        )
        json_path, html_path = write_report(results, report)
        console.print(f"wrote [bold]{json_path}[/bold] and [bold]{html_path}[/bold]")


def report_command(
    results: Path = typer.Argument(..., help="A results JSON written by `tessera evaluate --report` or `tessera compare --report`."),
    output: Optional[Path] = typer.Option(None, help="The HTML file (default: the JSON's name with .html)."),
) -> None:
    """Re-render the HTML report from a results JSON (no model or data needed)."""
    from tessera.errors import TesseraError
    from tessera.evaluate.report import render_report

    if not results.is_file():
        raise TesseraError(f"results file not found: {results}")
    out = render_report(results, output or results.with_suffix(".html"))
    console.print(f"wrote [bold]{out}[/bold]")


# -- helpers -----------------------------------------------------------------------------------
def _f(value: Any) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


def print_summary(results: dict[str, Any], title: str) -> None:
    meta = results["meta"]
    level = 100 * (1 - meta["alpha"])
    out = RichTable(title=f"{title} ({meta['n']} rows)")
    for col in ("metric", "value", f"{level:g}% CI"):
        out.add_column(col)
    for name, m in results["summary"].items():
        if isinstance(m, dict):
            out.add_row(name, _f(m["value"]), f"{_f(m['low'])} to {_f(m['high'])}")
    console.print(out)


def print_fairness(results: dict[str, Any]) -> None:
    for analysis in results.get("fairness") or []:
        out = RichTable(title=f"by {analysis['column']}")
        columns = list(analysis["groups"][0])
        for c in columns:
            out.add_column(c)
        for g in analysis["groups"]:
            out.add_row(*(str(g[c]) if isinstance(g[c], (str, int)) else _f(g[c]) for c in columns))
        console.print(out)
        gaps = ", ".join(f"{k} {_f(v)}" for k, v in analysis["largest_gap"].items())
        line = f"largest gap: {gaps}"
        if analysis.get("demographic_parity_difference") is not None:
            line += (f"; demographic parity diff {_f(analysis['demographic_parity_difference'])}, "
                     f"equalised odds diff {_f(analysis['equalized_odds_difference'])}")
        console.print(line)


def print_comparison(comparison: dict[str, Any]) -> None:
    rows = comparison["table"]
    out = RichTable(title=f"fusion vs unimodal baselines ({comparison['split']} split, {rows[0]['n']} rows)")
    columns = [c for c in rows[0] if c not in ("n", "watched", "first_score", "last_score")]
    for c in columns:
        out.add_column(c)
    for r in rows:
        out.add_row(*(str(r[c]) if isinstance(r[c], (str, int)) else _f(r[c]) for c in columns))
    console.print(out)
    g = comparison["gain"]
    level = 100 * (1 - g.get("alpha", 0.05))
    console.print(
        f"{g['measure']} of fusion over {g['baseline']}: [bold]{g['gain']:+.4f}[/bold] "
        f"({level:g}% paired bootstrap CI {_f(g['low'])} to {_f(g['high'])}), p = {g['p_value']:.4g} ({g['method']})"
    )
    for flag in comparison.get("flags", []):
        console.print(f"[yellow]note: {flag}[/yellow]")
