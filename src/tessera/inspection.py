"""`tessera data inspect`: show a table the way Tessera will read it, before any training.

The user sees the (inferred) schema with the reason for each column, row counts per split,
missing values and missing media files per input, label counts, and a few rows decoded by
the real preprocessors — so a wrong guess or a broken file shows up here, not mid-training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from tessera.derive import derivation
from tessera.errors import DataError, TesseraError
from tessera.files import atomic_write_text
from tessera.media import is_missing, resolve_media
from tessera.prepare import TEST_FRACTION, VAL_FRACTION, split_and_fit
from tessera.proposal import Proposal, propose
from tessera.preprocess import LoadContext, load_located, media_modalities
from tessera.schema import Schema, infer_schema, resolve_schema
from tessera.table import Table, read_table
from tessera.tasks import TASKS


def _open(path: Path, schema_path: Path | None):
    """A table file, or the name of a prepared recipe (its schema comes with it)."""
    if not path.exists() and "/" not in str(path) and path.suffix == "":
        from tessera import datasets

        if str(path) in datasets.RECIPES:
            prepared = datasets.prepare(str(path), download=False)
            return read_table(prepared.table_path), schema_path or prepared.schema_path
    return read_table(path), schema_path


SHOW_UNREADABLE = 5  # unreadable files named per input; the count says how many there are


def summarize_input(frame: pd.DataFrame, columns: list[str], modality: str, base_dir: str | None) -> dict[str, Any]:
    """Missing values, and for media the references that do not resolve (how many, and the first few named)."""
    missing = frame[columns].apply(lambda col: col.map(is_missing)).all(axis=1)
    out: dict[str, Any] = {"missing": int(missing.sum())}
    if modality in media_modalities():
        unreadable = []
        for row, v in frame.loc[~missing, columns[0]].items():
            try:
                resolve_media(v, base_dir)
            except DataError as e:
                unreadable.append(f"row {row}: {v if isinstance(v, str) else type(v).__name__} ({e.reason})")
        out["unreadable_refs"] = len(unreadable)
        out["unreadable"] = unreadable[:SHOW_UNREADABLE]
    return out


def inspect_table(
    path: str | os.PathLike,
    *,
    schema: str | os.PathLike | None = None,
    target: str | None = None,
    overrides: dict[str, str] | None = None,
    keep: list[str] | tuple[str, ...] = (),
    save_schema: str | os.PathLike | None = None,
    save_config: str | os.PathLike | None = None,
    examples: int = 3,
    console: Console | None = None,
) -> dict[str, Any]:
    """Print the inspection and return the same facts as a dict (for tests and scripting).

    An inferred schema comes with a proposal (:mod:`tessera.proposal`): with the zoo installed,
    a pretrained tower per input where one fits and derived text inputs, a line each saying why;
    ``save_config`` writes a fit config that trains it.
    """
    console = console or Console()
    table, schema_path = _open(Path(path), Path(schema) if schema else None)
    frame = table.frame
    reasons: dict[str, str] = {}
    proposal = None
    if schema_path is not None:
        sch = resolve_schema(frame, schema_path, target, table.base_dir)
    else:
        sch, reasons = infer_schema(frame, target, base_dir=table.base_dir, overrides=overrides, keep=keep)
        proposal = propose(frame, sch, table.base_dir)
        sch = proposal.schema
    sch.validate(frame, require_target=bool(sch.target), source=table.source)

    facts: dict[str, Any] = {"rows": len(frame), "source": table.source, "schema": sch.to_dict(), "inputs": {}}
    console.print(f"[bold]{table.source}[/bold]: {len(frame)} rows, {len(frame.columns)} columns")
    if sch.split and sch.split in frame.columns:
        counts = frame[sch.split].astype(str).value_counts().to_dict()
        facts["splits"] = {str(k): int(v) for k, v in counts.items()}
        console.print("splits: " + ", ".join(f"{k} {v}" for k, v in facts["splits"].items()))
    elif sch.target:
        shares = f"{round(100 * (1 - VAL_FRACTION - TEST_FRACTION))}/{round(100 * VAL_FRACTION)}/{round(100 * TEST_FRACTION)}"
        facts["split_note"] = (
            f"no split column: fit makes a seeded random {shares} % train/val/test split (seed: train.seed) "
            "and reports test metrics"
        )
        console.print(f"splits: {facts['split_note']}")

    # Narrow columns only: the reasons and file names go below the grid, so it reads at 80 columns.
    grid = RichTable(title="schema" + (" (inferred: confirm, or save and edit with --save-schema)" if schema_path is None else ""))
    for col in ("input", "modality", "columns", "missing", "unreadable files"):
        grid.add_column(col)
    notes = []
    for name, spec in sch.inputs.items():
        summary = summarize_input(frame, spec.columns, derivation(spec.via).source if spec.via else spec.modality, table.base_dir)
        facts["inputs"][name] = {"modality": spec.modality, "columns": spec.columns, **summary}
        grid.add_row(
            name, spec.modality, ", ".join(spec.columns),
            f"{summary['missing']} ({100 * summary['missing'] / len(frame):.1f}%)",
            str(summary.get("unreadable_refs", "-")),
        )
        # A column's reason, or the reason for an input derived from it (a video's sound: "clip (audio)").
        own = {c: reasons.get(f"{c} ({spec.modality})", reasons[c]) for c in spec.columns if c in reasons}
        why = "; ".join(r if spec.columns == [name] else f"{c}: {r}" for c, r in own.items())
        if spec.via:
            why = f"derived: {spec.via} of {spec.columns[0]}"
        if why:
            notes.append(escape(f"  {name}: {why}"))
        for ref in summary.get("unreadable", []):
            notes.append(f"  [red]{name} unreadable[/red], {ref}")
        if summary.get("unreadable_refs", 0) > SHOW_UNREADABLE:
            notes.append(f"  ... and {summary['unreadable_refs'] - SHOW_UNREADABLE} more unreadable {name} files")
    console.print(grid)
    if notes:
        console.print("why each input was inferred, and the files that cannot be read:" if reasons else "files that cannot be read:")
        for line in notes:
            console.print(line, highlight=False)
    if proposal is not None and proposal.choices:
        console.print("[bold]encoders[/bold] (proposed; the model config's encoders section, written by --save-config):")
        for line in proposal.lines:
            console.print(f"  {line}")
        facts["encoders"] = {n: {"encoder": c.encoder, "pretrained": c.pretrained, "why": c.why} for n, c in proposal.choices.items()}
        facts["derived"] = {n: s.to_dict() for n, s in sch.inputs.items() if s.via}
    if sch.target:
        console.print(f"target: {', '.join(sch.target)} (task: {sch.task})")
        if sch.task and TASKS.get(sch.task).exclusive_classes:  # a class count is worth showing
            counts = frame[sch.target[0]].value_counts()
            facts["classes"] = {str(k): int(v) for k, v in counts.items()}
            shown = ", ".join(f"{k}: {v}" for k, v in list(facts["classes"].items())[:12])
            console.print(f"{len(counts)} classes: {shown}{' ...' if len(counts) > 12 else ''}")
    ignored = [c for c in frame.columns if c in sch.ignore]
    facts["ignored"] = {c: reasons.get(c, "ignored") for c in ignored}
    if ignored:
        console.print("not used as inputs:")
        for c in ignored:
            console.print(escape(f"  {c}: {reasons.get(c, 'ignored')}"))

    if examples > 0:
        facts["examples"] = _decode_examples(frame, sch, table.base_dir, examples, console)
    if save_schema:
        sch.save(save_schema)
        console.print(f"schema written to {save_schema}")
    if save_config:
        config = (proposal or Proposal(sch, {}, {})).fit_config(str(Path(table.source).resolve()), f"runs/{Path(table.source).stem}")
        atomic_write_text(save_config, yaml.safe_dump(config, sort_keys=False))
        console.print(f"fit config written to {save_config} (train it with `tessera fit {save_config}`)")
    return facts


def _decode_examples(frame: pd.DataFrame, sch: Schema, base_dir: str | None, n: int, console: Console) -> dict[str, list[str]]:
    try:
        schema = Schema(sch.inputs, sch.target, sch.task, sch.split, sch.ignore)
        pipeline = split_and_fit(Table(frame, base_dir, "the table"), schema, supervised=False, val_fraction=0.0).pipeline
    except TesseraError as e:
        console.print(f"[red]cannot fit the preprocessors: {e}[/red]")
        return {}
    out: dict[str, list[str]] = {}
    # One line per row and input (not a column per input), so many inputs still fit 80 columns.
    grid = RichTable(title=f"first {n} rows, decoded")
    for col in ("row", "input", "decoded"):
        grid.add_column(col)
    for row in frame.index[:n]:
        for name, pre in pipeline.preprocessors.items():
            try:
                s = load_located(pre, [frame.at[row, c] for c in pre.columns], LoadContext(base_dir, int(row)))
                cell = pre.describe_sample(s)
            except DataError as e:
                cell = f"[red]error: {e.reason}[/red]"
            out.setdefault(name, []).append(cell)
            grid.add_row(str(row) if name == next(iter(pipeline.preprocessors)) else "", name, cell)
    console.print(grid)
    return out
