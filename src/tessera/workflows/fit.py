"""Train as a fit config says and save the model: what ``tessera fit CONFIG`` runs.

Where the training runs is the caller's choice: this process by default, or any function
with :meth:`Predictor.fit`'s signature (the command line passes
:func:`tessera.scale.train.fit_ray` for ``runner: ray``), so nothing here depends on Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from tessera.config import FitConfig, resolve_data
from tessera.errors import TesseraError
from tessera.predictor import Predictor

FitFunction = Callable[..., Any]  # (predictor, table, schema, *, target) -> trains the predictor in place


def local_fit(predictor: Predictor, table: Any, schema: Any, *, target: Any = None, resume: bool = False) -> Any:
    return predictor.fit(table, schema=schema, target=target, resume=resume)


def run_fit(
    cfg: FitConfig,
    output: str | os.PathLike | None = None,
    on_inferred: Callable[[Any, dict], None] | None = None,
    fit: FitFunction | None = None,
    resume: bool = False,
) -> tuple[Predictor, Path]:
    """Train as the config says and save; returns (predictor, output folder).

    ``fit`` runs the training (default: in this process). A config naming another runner
    needs its function: the command line picks it from ``cfg.runner``.

    In this process, a config without ``train.checkpoint_dir`` checkpoints into the output
    folder itself: a killed run leaves its best model there, loadable, with the state that
    ``resume=True`` (``tessera fit CONFIG --resume``) continues from. ``preset: best``
    trains many models into one ensemble and does not resume; its folder is written at the end.
    """
    if fit is None:
        if cfg.runner != "local":
            raise TesseraError(
                f"this config trains with runner {cfg.runner!r}: run it with `tessera fit`, or pass that runner's "
                "fit function (e.g. tessera.scale.train.fit_ray)"
            )
        fit = local_fit
    out = Path(output or cfg.output)
    train = cfg.train
    if fit is local_fit and not train.checkpoint_dir and cfg.preset != "best":  # (best's networks keep no state)
        train = train.replace(checkpoint_dir=str(out))
    table, schema = resolve_data(cfg, on_inferred)
    predictor = Predictor(model=cfg.model, train=train, preset=cfg.preset, time_limit=cfg.time_limit, exclude=cfg.exclude)
    fit(predictor, table, schema, target=cfg.data.get("target"), **({"resume": True} if resume else {}))
    checkpointed = train.checkpoint_dir and Path(train.checkpoint_dir).resolve() == out.resolve()
    if predictor.ensemble is not None or not checkpointed:
        predictor.save(out)  # (a network checkpointing into the output has saved its final model there)
    return predictor, out
