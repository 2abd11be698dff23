"""What does each input contribute to a trained model? Removal at test time and exact Shapley values.

A fusion model can score well while ignoring an input altogether (one input learns fast
and the others never catch up), and accuracy alone cannot tell. Here an input is
"removed" exactly as a missing value would be: ``present`` False, data zeroed, mask
False, which every fusion in Tessera already handles, so no retraining is needed.

* Removal: the drop in the main metric when one input is removed from every row.
* Shapley values: the average marginal gain of an input over all orders of adding
  inputs, with value(S) = the metric with only the inputs in S present (value(empty) =
  nothing present). They sum to value(all) - value(empty), and unlike removal they
  give redundant inputs (either one alone suffices) a fair share instead of zero.
  Exact values need all 2^M subsets, one pass over the split each; beyond 5 inputs
  use permutation sampling instead (not implemented here).
"""

from __future__ import annotations

import dataclasses

import itertools
import math
from typing import Any, Callable, Iterable, Sequence

import torch

from tessera.errors import SchemaError
from tessera.evaluate.metrics import predict_split
from tessera.pipeline import CachedSplit
from tessera.preprocess import ModalityBatch

MAX_EXACT_INPUTS = 5
IGNORE_THRESHOLD = 0.005  # 0.5 accuracy points (raised to one row on small splits)


def hide(batch: ModalityBatch, rows: torch.Tensor) -> ModalityBatch:
    """A copy of ``batch`` in which the rows selected by the bool ``rows`` (B,) look missing."""
    data = batch.data.clone()
    data[rows] = 0
    mask = None
    if batch.mask is not None:
        mask = batch.mask & ~rows.view(-1, *([1] * (batch.mask.dim() - 1)))
    return dataclasses.replace(batch, data=data, present=batch.present & ~rows, mask=mask)  # Features stay Features


def without_inputs(split: CachedSplit, names: Iterable[str]) -> CachedSplit:
    """A copy of the split in which the named inputs are missing from every row."""
    names = set(names)
    every = torch.ones(len(split), dtype=torch.bool)
    inputs = {k: hide(v, every) if k in names else v for k, v in split.inputs.items()}
    return CachedSplit(inputs, split.target, split.rows)


def shapley_values(value: Callable[[frozenset[str]], float], players: Sequence[str]) -> dict[str, float]:
    """Exact Shapley values of a set function over at most 5 players.

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (value(S + i) - value(S)).
    ``value`` is called once per subset.
    """
    players = list(players)
    n = len(players)
    if n > MAX_EXACT_INPUTS:
        raise SchemaError(
            f"exact Shapley values over {n} inputs need {2 ** n} evaluations; use at most {MAX_EXACT_INPUTS} "
            "inputs, or estimate them by sampling random input orders (permutation sampling)"
        )
    values = {s: value(s) for s in all_subsets(players)}
    phi = {}
    for p in players:
        total = 0.0
        for s, v in values.items():
            if p not in s:
                weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                total += weight * (values[s | {p}] - v)
        phi[p] = total
    return phi


def all_subsets(players: Sequence[str]) -> list[frozenset[str]]:
    return [frozenset(c) for k in range(len(players) + 1) for c in itertools.combinations(players, k)]


def contribution_analysis(
    model: torch.nn.Module,
    split: CachedSplit,
    target: Any,
    *,
    threshold: float | None = None,
    unimodal: dict[str, float] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Removal drops, Shapley values (up to 5 inputs) and an ``ignores_modality`` flag per input.

    An input is flagged when removing it moves the metric by less than ``threshold`` and
    its Shapley value is also below it: the model gives the same answers without it,
    and it adds nothing on top of any subset of the others either (so it is not merely
    redundant with another input). ``unimodal`` (an input -> metric of its own model,
    e.g. from :func:`tessera.workflows.compare.compare_models`) adds a warning when an
    ignored input does well on its own: the fusion model leaves information unused.

    The default threshold is 0.5 points, or one row's worth (1/n) when that is larger:
    on a split of 48 rows a single flipped row is 2 points, and a difference smaller
    than one row cannot be told apart from none.
    """
    inputs = list(model.encoders)
    threshold = max(IGNORE_THRESHOLD, 1.0 / max(len(split), 1)) if threshold is None else threshold
    memo: dict[frozenset[str], float] = {}

    def value(subset: frozenset[str]) -> float:
        if subset not in memo:
            y, scores = predict_split(model, without_inputs(split, set(inputs) - subset), target, batch_size)
            memo[subset] = target.main_score(y, scores)
        return memo[subset]

    everything = frozenset(inputs)
    shapley = shapley_values(value, inputs) if len(inputs) <= MAX_EXACT_INPUTS else None
    full, none = value(everything), value(frozenset())
    records = []
    for name in inputs:
        drop = full - value(everything - {name})
        phi = None if shapley is None else shapley[name]
        ignored = abs(drop) < threshold and (phi is None or abs(phi) < threshold)
        record: dict[str, Any] = {
            "input": name,
            "without": value(everything - {name}),
            "removal_drop": drop,
            "alone": value(frozenset({name})),
            "shapley": phi,
            "ignores_modality": bool(ignored),
            "warning": None,
        }
        if unimodal is not None and name in unimodal:
            record["unimodal"] = unimodal[name]
            if ignored and unimodal[name] > none + threshold:
                record["warning"] = (
                    f"the model ignores {name!r}, yet a model on {name!r} alone scores {unimodal[name]:.3f} "
                    f"(vs {none:.3f} with no inputs): fusion leaves that information unused"
                )
        elif ignored:
            record["warning"] = f"the model gives the same answers with or without {name!r}"
        records.append(record)
    return {
        "metric": target.main_metric.metric,
        "full": full,
        "none": none,
        "threshold": threshold,
        "inputs": records,
        "subsets": [{"inputs": sorted(s), "value": v} for s, v in sorted(memo.items(), key=lambda kv: (len(kv[0]), sorted(kv[0])))],
        "shapley_exact": shapley is not None,
    }
