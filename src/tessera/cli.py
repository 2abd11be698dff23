"""The `tessera` command line. Errors caused by the user's data print one clear line, exit code 2.

`tessera` with no command runs the main job (train + evaluate a fusion model and its
unimodal baselines on AV-MNIST, or on the synthetic set when AV-MNIST is absent).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from tessera.errors import TesseraError, TesseraWarning

app = typer.Typer(
    help="Tessera: multimodal fusion, alignment and search. Run with no command for the end-to-end demo job.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect tables and prepare ready-made datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


@app.callback(invoke_without_command=True)
def main_job(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, help="Recipe to use instead of AV-MNIST/synthetic (e.g. synthetic)."),
    full: bool = typer.Option(False, "--full", help="The whole AV-MNIST table (55,000 training pairs) and 10 epochs, instead of the quick 4,000-pair, 3-epoch run."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs per model (default: 3, or 10 with --full)."),
    max_train_rows: int = typer.Option(0, min=0, help="Train on a random subset of this many rows (0: all the table has)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads (default: the idle cores)."),
    output: Path = typer.Option(Path("runs/main-job"), help="Where to save the fusion model and the report."),
    seed: int = typer.Option(0),
    towers: bool = typer.Option(True, help="Pretrained towers where one fits (when the zoo is installed); --no-towers: all from scratch."),
) -> None:
    """Run the main job when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    from tessera.quickstart import run_quickstart

    run_quickstart(
        dataset, full=full, epochs=epochs, max_train_rows=max_train_rows or None, seed=seed, threads=threads,
        output=output, towers=towers, console=console,
    )


# -- data ---------------------------------------------------------------------------------------


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise TesseraError(f"--modality expects COLUMN=MODALITY, got {p!r}")
        col, mod = p.split("=", 1)
        out[col] = mod
    return out


@data_app.command("inspect")
def data_inspect(
    path: Path = typer.Argument(..., help="A table: CSV, TSV, Parquet, JSONL; or a prepared recipe name."),
    schema: Optional[Path] = typer.Option(None, help="A schema YAML to use instead of inferring one."),
    target: Optional[str] = typer.Option(None, help="The column to predict (inferred from names like 'label')."),
    modality: list[str] = typer.Option([], "--modality", "-m", help="Override: COLUMN=MODALITY or COLUMN=ignore."),
    keep: list[str] = typer.Option([], "--keep", help="A column inference would leave out as a likely leak, kept as an input (repeatable)."),
    save_schema: Optional[Path] = typer.Option(None, help="Write the (inferred) schema to this YAML file."),
    save_config: Optional[Path] = typer.Option(None, help="Write a fit config training the proposal (schema and encoders) to this YAML file."),
    examples: int = typer.Option(3, help="How many rows to decode and show per input."),
) -> None:
    """Show the schema (each column's type or why it is left out), the proposed encoders (pretrained where one fits), counts, missing values per input, and a few decoded examples."""
    from tessera.inspection import inspect_table

    inspect_table(
        path, schema=schema, target=target, overrides=_overrides(modality), keep=keep, save_schema=save_schema,
        save_config=save_config, examples=examples, console=console,
    )


@data_app.command("prepare")
def data_prepare(
    recipe: str = typer.Argument(..., help="avmnist, flickr8k, fsdd, esc50, fashion_mnist or synthetic."),
    force: bool = typer.Option(False, help="Rebuild even when a cached table exists."),
    download: bool = typer.Option(True, help="Download missing raw sources from their public locations."),
    option: list[str] = typer.Option([], "--option", "-o", help="Recipe option KEY=VALUE (YAML value)."),
) -> None:
    """Build a ready table (and schema.yaml, card.md) from raw sources in the data home."""
    from tessera import datasets

    kwargs: dict[str, Any] = {}
    for kv in option:
        if "=" not in kv:
            raise TesseraError(f"--option expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        kwargs[k] = yaml.safe_load(v)
    prepared = datasets.prepare(recipe, force=force, download=download, **kwargs)
    table = RichTable(title=f"prepared {prepared.name}")
    table.add_column("what")
    table.add_column("value")
    table.add_row("table", str(prepared.table_path))
    table.add_row("schema", str(prepared.schema_path))
    table.add_row("card", str(prepared.card_path))
    for split, n in prepared.rows.items():
        table.add_row(f"rows ({split})", str(n))
    console.print(table)


@data_app.command("examples")
def data_examples(
    out: Path = typer.Option(Path("examples"), help="Folder to write (replaced whole)."),
) -> None:
    """Write the README's sample files (real products with photos, from the data home) to examples/."""
    from tessera.datasets.examples import write_examples

    folder = write_examples(out)
    names = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))
    console.print(f"wrote {folder}/: {names} and images/ (see {folder / 'README.md'} for the source and licence)")


# -- models -------------------------------------------------------------------------------------


@app.command("fit")
def fit(
    config: Optional[Path] = typer.Argument(None, help="A YAML config with data, model and train sections."),
    output: Optional[Path] = typer.Option(None, help="Where to save the model (default: config's output)."),
    resume: bool = typer.Option(False, "--resume", help="Continue this config's interrupted run from its last epoch (state kept in the output, or train.checkpoint_dir)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads (default: the config's train.threads, else the idle cores)."),
    finetune: Optional[Path] = typer.Option(None, help="Fine-tune this saved model on new rows instead of training from a config (needs --extra-data)."),
    extra_data: list[Path] = typer.Option([], "--extra-data", help="With --finetune: a table of new rows, e.g. from `tessera feedback export` (repeatable)."),
    epochs: int = typer.Option(3, help="With --finetune: fine-tuning epochs."),
    runner: Optional[str] = typer.Option(None, help="'local' or 'ray' (data-parallel on Ray Train; default: the config's runner)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: 'auto', 'ray://HOST:PORT' (default: the config's, else a local cluster)."),
    preset: Optional[str] = typer.Option(None, help="'best': several models and a validation-chosen weighted ensemble, with a leaderboard (default: the config's preset)."),
    time_limit: Optional[float] = typer.Option(None, help="With --preset best: seconds to spend; no new model starts once it is nearly spent."),
) -> None:
    """Train a model from a config and save it (--resume: continue an interrupted run); or fine-tune a saved one (--finetune MODEL --extra-data TABLE)."""
    if finetune is not None:
        from tessera.finetune import fine_tune

        if not extra_data:
            raise TesseraError("--finetune needs --extra-data TABLE (e.g. from `tessera feedback export`)")
        predictor = fine_tune(finetune, extra_data, epochs=epochs)
        out = predictor.save(output or finetune.with_name(finetune.name + "-finetuned"))
        console.print(f"fine-tuned {finetune} on {', '.join(map(str, extra_data))}; saved to [bold]{out}[/bold]")
        return
    if config is None:
        raise TesseraError("give a config to train from, or --finetune MODEL --extra-data TABLE to fine-tune")
    from tessera.config import load_fit_config
    from tessera.workflows.fit import run_fit

    def show(schema, reasons: dict) -> None:
        console.print("[bold]inferred schema[/bold] (give `data: {schema: ...}` in the config to override):")
        console.print(yaml.safe_dump(schema.to_dict(), sort_keys=False).rstrip())
        for column, why in reasons.items():
            console.print(escape(f"  {column}: {why}"))

    cfg = load_fit_config(config).with_runner(runner, address)
    if preset is not None or time_limit is not None:
        cfg = cfg.replace(preset=preset or cfg.preset, time_limit=time_limit if time_limit is not None else cfg.time_limit)
    if threads is not None:
        cfg.train.threads = threads
    if cfg.preset == "best":
        show_progress("tessera.best")
    fit_function = None  # this process
    if cfg.runner == "ray":
        if resume:
            raise TesseraError(
                "--resume continues a local run; a Ray run resumes by itself when started again with the same "
                "train.checkpoint_dir (its state is in CHECKPOINT_DIR.ray)"
            )
        from functools import partial

        from tessera.scale.train import fit_ray

        fit_function = partial(fit_ray, num_workers=cfg.workers, address=cfg.address)
    predictor, out = run_fit(cfg, output=output, on_inferred=show, fit=fit_function, resume=resume)
    console.print(f"saved model to [bold]{out}[/bold]")
    if predictor.split_note:
        console.print(f"rows: {predictor.split_note}")
    if predictor.ensemble is not None:
        print_leaderboard(predictor.ensemble.leaderboard, out)
    if predictor.result is not None and predictor.result.output is not None:
        from tessera.train import describe_output

        console.print(f"the model {describe_output(predictor.result.output)}")
    for split, m in predictor.metrics.items():
        console.print(f"{split}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    if "val" in predictor.metrics:
        console.print("(no test rows: that is the validation score, which also chose the best epoch, so a little "
                      "optimistic; a split column with train/val/test rows gives an unbiased one)")


def show_progress(logger: str) -> None:
    """Print a workflow's log lines (one per model it trains) on the console."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(logger)
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def print_leaderboard(board: Any, folder: Path) -> None:
    table = RichTable(title=f"leaderboard (also in {folder}/leaderboard.csv)")
    for column in board.columns:
        table.add_column(str(column))
    for row in board.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in row))
    console.print(table)


@app.command("predict")
def predict(
    model: Path = typer.Argument(..., help="A saved model folder."),
    table: Path = typer.Argument(..., help="The table to predict on."),
    output: Optional[Path] = typer.Option(None, help="Write predictions to this CSV/Parquet (default: print)."),
    proba: bool = typer.Option(False, help="Class probabilities instead of labels."),
    runner: str = typer.Option("local", help="'local' or 'ray' (a Ray actor pool; needs --output FILE.parquet)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: 'auto', 'ray://HOST:PORT' (default: a local cluster)."),
) -> None:
    """Predict with a saved model; needs nothing but the model folder and the table."""
    from tessera.config import check_runner
    from tessera.files import atomic_path
    from tessera.predictor import Predictor

    ray_runner = check_runner(runner, address) == "ray"
    if ray_runner and (output is None or output.suffix.lower() not in (".parquet", ".pq")):
        raise TesseraError("--runner ray writes its predictions to a Parquet file: add --output FILE.parquet")
    pred = Predictor.load(model)
    if ray_runner:
        from tessera.scale.predict import predict_ray

        n = predict_ray(pred, str(table), output, proba=proba, address=address)
        console.print(f"wrote {n} predictions to {output}")
        return
    result = pred.predict_proba(table) if proba else pred.predict(table)
    frame = result.to_frame() if hasattr(result, "to_frame") else result
    if output is None:
        console.print(frame.to_string(max_rows=50))
        return
    with atomic_path(output) as tmp:
        if output.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(tmp)
        else:
            frame.to_csv(tmp, index_label="row")
    console.print(f"wrote {len(frame)} predictions to {output}")


from tessera.align.cli import register as register_align  # noqa: E402  (align)
from tessera.evaluate.cli import register as register_evaluate  # noqa: E402  (evaluate, compare, report)
from tessera.generate_cli import register as register_generate  # noqa: E402  (generate fit/evaluate, generate MODEL)
from tessera.index.cli import register as register_index  # noqa: E402  (index build/info/delete, search)
from tessera.serve.cli import register as register_serve  # noqa: E402  (serve, feedback export, monitor)
from tessera.zoo_cli import register as register_models  # noqa: E402  (models, models check)

register_evaluate(app)
register_align(app)
register_index(app)
register_serve(app)
register_models(app)
register_generate(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 (warnings' hook)
    """Tessera's own warnings as one plain line (no source path and line); others as Python shows them."""
    if issubclass(category, TesseraWarning):
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main() -> None:
    """Entry point: run the app, turning Tessera's own errors and warnings into readable lines."""
    warnings.showwarning = _show_warning
    try:
        app(standalone_mode=False)
    except TesseraError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors come here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
