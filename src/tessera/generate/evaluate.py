"""A generator's held-out evaluation as the results dict the evaluation report renders.

Rows that share an input (Flickr's five captions of one photo) are one example with several
references; the generator writes one text per distinct input. Scores come from the
``text_generation`` task (CIDEr-D and BLEU-4 with percentile-bootstrap intervals over the
inputs), agreement with the image from an aligned space when one is given
(:mod:`tessera.generate.agreement`), and the examples section shows inputs spread over the
CIDEr ranking, best to worst, each with its thumbnail, references, generated text and scores.
The results go through :func:`tessera.evaluate.report.write_report` unchanged, so the HTML
is the same report as a classifier's, with the sections that only apply to classes saying so.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

import tessera
from tessera.errors import SchemaError
from tessera.evaluate.metrics import bootstrap_ci
from tessera.generate.generator import INPUT, media_key
from tessera.table import read_table
from tessera.tasks.text_generation import TextGeneration


@dataclass
class HeldOut:
    """Distinct inputs (their cells, in order of first appearance), each with its reference texts."""

    inputs: list[Any]
    references: list[list[str]]
    rows: list[int]  # the table row of each input's first appearance
    prompts: list[str | None]  # each entry's prompt (None: the generator's default)


def group_references(
    frame: pd.DataFrame, input_column: str, text_columns: Sequence[str], prompt_column: str | None = None
) -> HeldOut:
    """One entry per distinct input cell (and prompt: VQA asks several questions of one image),
    with the non-empty texts of all its rows as references."""
    for c in (input_column, *text_columns, *([prompt_column] if prompt_column else [])):
        if c not in frame.columns:
            raise SchemaError(f"column {c!r} is not in the table; columns: {list(frame.columns)}")
    task = TextGeneration(list(text_columns))
    refs, known = task.encode(frame)
    groups: dict[Any, int] = {}
    out = HeldOut([], [], [], [])
    for pos, (row, value) in enumerate(frame[input_column].items()):
        if not known[pos]:
            continue
        prompt = frame.at[row, prompt_column] if prompt_column else None
        prompt = prompt if isinstance(prompt, str) and prompt.strip() else None
        key = (media_key(value, row), prompt)
        if key not in groups:
            groups[key] = len(out.inputs)
            out.inputs.append(value)
            out.references.append([])
            out.rows.append(int(row))
            out.prompts.append(prompt)
        out.references[groups[key]] += list(refs[pos])
    if not out.inputs:
        raise SchemaError(f"no row has a reference text in {list(text_columns)}")
    return out


def score_texts(
    held_out: HeldOut,
    generated: Sequence[str],
    *,
    agreement: Any = None,
    base_dir: str | os.PathLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``summary`` (metric -> value, low, high, plus ``n``) and per-input scores of texts written for ``held_out``."""
    from tessera.evaluate.metrics import task_metrics

    task = TextGeneration(["text"])
    y_true, scores = task.true_values(held_out.references), task.scores(list(generated))
    summary = task_metrics(task, y_true, scores, n_boot=n_boot, alpha=alpha, seed=seed)
    per_row = {"cider": task.per_row_outcome(y_true, scores)}
    if agreement is not None:
        from tessera.generate.agreement import agreement_summary

        per_row["agreement"], context = agreement_summary(
            agreement, held_out.inputs, list(generated), held_out.references, base_dir=base_dir
        )
        value, low, high = bootstrap_ci(_mean, per_row["agreement"], per_row["agreement"], n_boot, alpha, seed)
        summary["agreement"] = {"value": value, "low": low, "high": high, **context}
    return summary, per_row


def _mean(values: np.ndarray, _: np.ndarray) -> float:
    return float(np.mean(values))


_mean.weighted = lambda values, _, counts: counts @ values / len(values)  # type: ignore[attr-defined]


def spread_examples(per_row_cider: np.ndarray, k: int) -> list[int]:
    """``k`` positions evenly spaced along the CIDEr ranking, best first: what the model does well and badly."""
    order = np.argsort(-per_row_cider, kind="stable")
    if k >= len(order):
        return order.tolist()
    return [int(order[round(i * (len(order) - 1) / max(k - 1, 1))]) for i in range(k)]


def caption_results(
    held_out: HeldOut,
    generated: Sequence[str],
    *,
    pipeline: Any,
    frame: pd.DataFrame,
    base_dir: str | None,
    agreement: Any = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_examples: int = 8,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results dict of the evaluation report for texts written for ``held_out`` (by a generator or a baseline)."""
    from tessera.evaluate.examples import cell_media

    summary, per_row = score_texts(
        held_out, generated, agreement=agreement, base_dir=base_dir, n_boot=n_boot, alpha=alpha, seed=seed
    )
    pre = pipeline.preprocessors[INPUT]
    examples = []
    for i in spread_examples(per_row["cider"], n_examples):
        row = held_out.rows[i]
        examples.append(
            {
                "row": row,
                "loss": -float(per_row["cider"][i]),
                "true": " | ".join(held_out.references[i]),
                "predicted": generated[i],
                "scores": {name: float(v[i]) for name, v in per_row.items()},
                "inputs": [cell_media(pre.columns[0], pre, [frame.at[row, c] for c in pre.columns], base_dir)],
            }
        )
    return {
        "meta": {
            **(meta or {}),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tessera_version": tessera.__version__,
            "task": TextGeneration.name,
            "inputs": {pre.columns[0]: pre.modality},
            "n": len(held_out.inputs),
            "main_metric": TextGeneration.main_metric.metric,
            "n_boot": n_boot,
            "alpha": alpha,
            "seed": seed,
        },
        "summary": summary,
        "examples": examples,
    }


def evaluate_generator(
    generator: Any,
    table: Any,
    *,
    split: str | None = None,
    agreement: Any = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    model_name: str = "generator",
    **options: Any,
) -> tuple[dict[str, Any], list[str]]:
    """Generate for every distinct input of ``table`` (rows of ``split`` only, if given) and score against its texts.

    The input, text and split columns are the generator's config's. ``options`` go to
    :func:`caption_results` (n_boot, alpha, seed, n_examples). Returns the results and the generated texts.
    """
    if generator.config is None or generator.pipeline is None:
        raise SchemaError("a text-only generator has no input column to evaluate on; fit one on a table first")
    d = generator.config.data
    t = read_table(table)
    frame = t.frame
    if split is not None:
        if not d.split or d.split not in frame.columns:
            raise SchemaError(f"split {split!r} needs the config's split column (data.split: {d.split!r}) in the table")
        frame = frame[frame[d.split].astype(str).str.lower() == split]
        if frame.empty:
            raise SchemaError(f"no rows have split {split!r} in column {d.split!r}")
    held_out = group_references(frame, d.input, [d.text], d.prompt)
    prompts = None if d.prompt is None else [p or generator.config.prompt for p in held_out.prompts]
    generated = generator.generate(
        held_out.inputs, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, base_dir=t.base_dir
    )
    meta = {"model": model_name, "table": t.source, "split": split or "all rows"}
    results = caption_results(
        held_out,
        generated,
        pipeline=generator.pipeline,
        frame=frame,
        base_dir=t.base_dir,
        agreement=agreement,
        meta=meta,
        **options,
    )
    return results, generated
