"""Data-parallel training on Ray Train's ``TorchTrainer``, running :func:`tessera.train.train` on every worker.

The driver does what :meth:`Predictor.fit` does before decoding: read, split, fit the
preprocessors on the training rows (:func:`tessera.prepare.split_and_fit`). Each worker then decodes
its share of the rows with the pipeline's own :func:`~tessera.pipeline.cache_split`, the
shares are exchanged so every worker holds the whole (decoded) split, and every worker runs
the ordinary training loop on its part of each global batch:

* a global batch is exactly the one the single-process run draws (same seeded shuffle,
  same ``batch_size``); worker ``r`` of ``W`` takes the ``r``-th of ``W`` contiguous parts;
* after backward, gradients are summed over workers weighted by each part's rows
  (one all-reduce), so every worker steps with the global batch's mean gradient and the
  weights stay identical; the epoch's loss totals are summed the same way.

So the loss curve matches the single-process run's up to what is computed per part: batch
normalisation statistics and dropout masks (each worker draws its own), and float order.

Checkpoints: after every epoch rank 0 reports the loop's whole state (weights, optimizer,
schedule, RNG, history, best weights) to Ray Train. When a worker dies, Ray Train restarts the
worker group (up to ``max_failures`` times) and the loop resumes from the last checkpoint;
running again with the same ``storage``/``name`` resumes a run whose driver died.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from tessera.errors import DataError, SkipReport
from tessera.pipeline import Batch, CachedSplit, Pipeline, cache_split
from tessera.prepare import SKIP_REPORT, decode_table, split_and_fit
from tessera.preprocess import ModalityBatch
from tessera.table import Table

STATE_FILE = "train_state.pt"


class TorchCollective:
    """Gradient and total sums over the workers of a ``torch.distributed`` process group (gloo on CPU)."""

    def average_gradients(self, model: torch.nn.Module, count: int) -> None:
        import torch.distributed as dist

        params = [p for p in model.parameters() if p.requires_grad]
        has = torch.tensor([float(p.grad is not None) for p in params])
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        buffer = torch.cat([flat * count, has, torch.tensor([float(count)])])
        dist.all_reduce(buffer)  # one message per step, not one per tensor
        grads, has = buffer[: flat.numel()] / buffer[-1], buffer[flat.numel() : -1]  # row-weighted mean
        offset = 0
        for p, h in zip(params, has):
            n = p.numel()
            p.grad = grads[offset : offset + n].view_as(p).clone() if h > 0 else None  # None where no worker had one
            offset += n

    def sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()


class DataParallelSplit:
    """Worker ``rank``'s part of every global batch of a split every worker holds whole.

    ``len`` is the whole split's, so the loop's schedule (steps per epoch, warm-up) is the
    single-process one. A final global batch smaller than the number of workers is dropped,
    as some worker would get no rows (at most ``world - 1`` rows per epoch).
    """

    def __init__(self, split: CachedSplit, rank: int, world: int) -> None:
        self.split, self.rank, self.world = split, rank, world

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        for batch in self.split.batches(batch_size, shuffle=shuffle, seed=seed):
            if len(batch) < self.world:
                continue
            idx = torch.arange(len(batch)).tensor_split(self.world)[self.rank]
            yield Batch(
                {k: v.index(idx) for k, v in batch.inputs.items()},
                None if batch.target is None else batch.target[idx],
                batch.rows[idx],
            )


def decode_shared(pipeline: Pipeline, table: Table, on_error: str, rank: int, world: int) -> tuple[CachedSplit | None, list[DataError]]:
    """Decode rows ``rank::world`` here, then gather every worker's rows into one split in table order.

    Data errors come back as values (with every worker's), so all workers agree on whether to
    go on; raising on one worker alone would leave the others waiting in the next collective.
    """
    import torch.distributed as dist

    part = Table(table.frame.iloc[rank::world], table.base_dir, table.source)
    report = SkipReport()
    mine: CachedSplit | None = None
    try:
        ds = pipeline.dataset(part, with_target=True, on_error=on_error, validate=False)  # the driver validated the table
        mine = cache_split(pipeline, ds, report=report, description=f"decoding (worker {rank})")
    except DataError as e:
        report.add(e)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (mine, report.rows))
    errors = [e for _, errs in gathered for e in errs]
    splits = [s for s, _ in gathered if s is not None]
    if (errors and on_error == "raise") or not splits:
        return None, errors
    rows = torch.cat([s.rows for s in splits])
    order = torch.argsort(rows)
    inputs = {
        name: ModalityBatch(
            torch.cat([s.inputs[name].data for s in splits])[order],
            torch.cat([s.inputs[name].present for s in splits])[order],
            None if splits[0].inputs[name].mask is None else torch.cat([s.inputs[name].mask for s in splits])[order],
        )
        for name in splits[0].inputs
    }
    target = None if splits[0].target is None else torch.cat([s.target for s in splits])[order]
    return CachedSplit(inputs, target, rows[order]), errors


def worker_loop(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: decode its share, then :func:`tessera.train.train` with a collective."""
    import ray
    import ray.train

    from tessera.model import ModelConfig, build_model
    from tessera.train import TrainConfig, train

    job = ray.get(config["job"]) if isinstance(config["job"], ray.ObjectRef) else config["job"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    pipeline: Pipeline = job["pipeline"]
    train_config = TrainConfig.from_dict(job["train_config"])
    train_config.device = "cpu"
    splits, errors = {}, []
    for name in ("train", "val"):
        if name in job["parts"]:
            splits[name], errs = decode_shared(pipeline, job["parts"][name], train_config.on_error, rank, world)
            errors += errs
    if any(s is None for s in splits.values()):  # a data error under "raise", or no usable rows
        first = [_error_fields(e) for e in errors[:1]] or [["no usable rows", None, None, None]]
        _report(rank, {"data_errors": first}, {"data_errors": first})
        return
    torch.manual_seed(train_config.seed)  # the same initial weights on every worker, as in Predictor.fit_prepared
    model_config = ModelConfig.from_dict(job["model_config"])
    model = build_model(pipeline, model_config)
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / STATE_FILE, weights_only=False)

    resumed_from = list(resume.get("resumed_from", [])) + [resume["epoch"]] if resume is not None else []

    def on_epoch_end(state: dict[str, Any]) -> None:
        extra = {"skipped": [_error_fields(e) for e in errors], "resumed_from": resumed_from}
        _report(rank, dict(state["history"][-1]), {**state, **extra})

    train(
        model, DataParallelSplit(splits["train"], rank, world), splits.get("val"), pipeline.target, train_config,
        aux_weight=model_config.aux_loss_weight, collective=TorchCollective(), on_epoch_end=on_epoch_end, resume=resume,
        log_epochs=rank == 0,
    )


def _report(rank: int, metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Report on every worker (a barrier in Ray Train); rank 0 attaches ``state`` as the checkpoint."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        saved = None
        if rank == 0:
            torch.save(state, Path(folder) / STATE_FILE)
            saved = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=saved)


def _error_fields(e: DataError) -> list[Any]:
    return [e.reason, e.row, e.column, e.file]


def fit_ray(
    predictor: Any,
    table: Any,
    schema: Any = None,
    *,
    target: str | list[str] | None = None,
    num_workers: int = 2,
    address: str | None = None,
    storage: str | os.PathLike | None = None,
    name: str = "tessera-fit",
    max_failures: int = 3,
    skip_report: str | os.PathLike = SKIP_REPORT,
) -> Any:
    """:meth:`Predictor.fit` on ``num_workers`` Ray Train workers; returns the predictor, trained.

    ``storage`` holds Ray Train's checkpoints (default: ``<checkpoint_dir>.ray`` beside the
    predictor's ``checkpoint_dir``, else a temporary folder); on a multi-node cluster it must be
    a path every node sees (shared disk or ``s3://``). A run started again with the same
    ``storage`` and ``name`` continues from its last checkpoint.
    """
    from tessera.model import build_model
    from tessera.predictor import Predictor
    from tessera.scale.runner import ray_session, tessera_errors
    from tessera.train import TrainResult

    assert isinstance(predictor, Predictor)
    cfg = predictor.train_config
    prepared = split_and_fit(table, schema, target, cfg, encoders=predictor.model_config.encoders)
    pipeline = predictor.pipeline = prepared.pipeline
    parts = prepared.tables
    if storage is None:
        # Beside checkpoint_dir, not in it: the final save swaps that folder whole.
        storage = Path(f"{cfg.checkpoint_dir}.ray") if cfg.checkpoint_dir else Path(tempfile.mkdtemp(prefix="tessera-ray-"))
    storage = str(storage) if "://" in str(storage) else str(Path(storage).resolve())
    with ray_session(address) as ray, tessera_errors():
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        job = {
            "pipeline": pipeline,
            "parts": {k: v for k, v in parts.items() if k in ("train", "val")},
            "train_config": cfg.to_dict(),
            "model_config": predictor.model_config.to_dict(),
        }
        trainer = TorchTrainer(
            worker_loop,
            train_loop_config={"job": ray.put(job)},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False),
            run_config=RunConfig(name=name, storage_path=storage, failure_config=FailureConfig(max_failures=max_failures)),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise DataError("distributed training ended without a checkpoint (no epoch finished)")
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
    if "data_errors" in state:
        reason, row, column, file = state["data_errors"][0]
        raise DataError(reason, row=row, column=column, file=file)
    predictor.model = build_model(pipeline, predictor.model_config)
    predictor.model.load_state_dict(state["best_state"] if state["best_state"] is not None else state["model"])
    predictor.model.eval()
    predictor.result = TrainResult(
        history=state["history"], best_epoch=state["best_epoch"], best_metric=state["best_metric"],
        metric_name=pipeline.target.monitor.metric,
    )
    predictor.result.resumed_from = state.get("resumed_from", [])  # epochs a restarted worker group resumed after
    if state["skipped"]:
        report = SkipReport([DataError(r, row=row, column=c, file=f) for r, row, c, f in state["skipped"]])
        report.warn(report.write(skip_report))
    predictor.metrics = {}
    if "test" in parts:
        source = decode_table(pipeline, parts["test"], cfg, SkipReport(), name="test", validated=True)
        predictor.metrics = {"test": predictor.metrics_on(source)}
    if cfg.checkpoint_dir:
        predictor.save(cfg.checkpoint_dir)
    return predictor
