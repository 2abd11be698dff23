"""The training loop: AdamW, linear warmup then cosine decay, gradient clipping, early stopping.

A lean loop of our own rather than Lightning: the whole thing is this file, it runs the
same on cached tensors and on streamed batches, and determinism with a seed is easy to
see. Checkpointing is a callback so the caller decides where a "best" model is written.

The task (:mod:`tessera.tasks`) supplies the loss, the quick validation score and which of
its numbers early stopping watches. Two optional remedies for modality imbalance (one input
learns fast and starves the others) use the per-input logits a model returns in its
:class:`~tessera.model.ModelOutput`: a balanced auxiliary loss (``model.aux_heads`` with
``aux_weight``) and OGM-GE gradient modulation (``gradient_modulation``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Iterator, Literal, Protocol

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tessera.errors import SchemaError
from tessera.optim import adamw, warmup_cosine_schedule
from tessera.pipeline import Batch
from tessera.prepare import DataSettings
from tessera.progress import log, progress_bar, seconds
from tessera.tasks import Task, tasks_where
from tessera.threads import torch_threads

if TYPE_CHECKING:
    from tessera.model import MultimodalModel


class TrainConfig(DataSettings):
    """The ``train`` section: the optimisation, plus how the run splits and reads its rows (:class:`DataSettings`).

    Predicting, evaluating and serving use an :class:`~tessera.predictor.InferenceConfig` instead.
    """

    section: ClassVar[str] = "train"
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3  # epochs without validation improvement before stopping
    device: str = "auto"
    gradient_modulation: Literal["none", "ogm_ge"] = "none"  # "ogm_ge": slow the encoders of inputs that already do well
    ogm_alpha: Annotated[float, Field(ge=0)] = 0.5  # OGM-GE strength: k = 1 - tanh(alpha * relu(ratio - 1))
    checkpoint_dir: str | None = None  # save the predictor here each time validation improves, and the state to resume
    threads: Annotated[int, Field(ge=1)] | None = None  # torch threads; None: the idle cores (tessera.threads)


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def balanced_aux_loss(
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: dict[str, torch.Tensor],
    present: dict[str, torch.Tensor],
    target: torch.Tensor,
) -> torch.Tensor | None:
    """Mean over inputs of each input's own loss, taken only over the rows where it is present.

    Averaging per input, not per row, gives an often-missing input the same weight as a
    complete one; absent (or dropped) rows teach an input's head nothing. None when no
    input is present in any row of the batch.
    """
    losses = [criterion(out[present[n]], target[present[n]]) for n, out in logits.items() if present[n].any()]
    return torch.stack(losses).mean() if losses else None


def ogm_coefficients(
    logits: dict[str, torch.Tensor], present: dict[str, torch.Tensor], target: torch.Tensor, alpha: float
) -> dict[str, float]:
    """OGM-GE's per-input gradient scale, from how far ahead each input is on this batch.

    Peng et al., CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation".
    An input's score is its mean softmax probability of the true class over the rows that
    have it; k = 1 - tanh(alpha * relu(score / mean score of the others - 1)), so only
    inputs ahead of the rest are slowed. The paper has two inputs; the mean of the others
    is the natural extension to more. Inputs absent from the whole batch keep k = 1.
    """
    scores = {}
    for n, out in logits.items():
        here = present[n]
        if here.any():
            probs = torch.softmax(out[here].detach().float(), dim=-1)
            scores[n] = float(probs.gather(1, target[here].long().unsqueeze(1)).mean())
    coeffs = {n: 1.0 for n in logits}
    if len(scores) < 2:
        return coeffs
    for n, s in scores.items():
        others = (sum(scores.values()) - s) / (len(scores) - 1)
        ratio = s / max(others, 1e-8)
        coeffs[n] = 1.0 - math.tanh(alpha * max(ratio - 1.0, 0.0))
    return coeffs


def modulate_gradients(module: nn.Module, k: float) -> None:
    """Scale a slowed encoder's gradients by k and add Gaussian noise of each gradient's own std.

    The noise is OGM-GE's "generalization enhancement": scaling alone shrinks the SGD noise
    that helps generalization, so it is put back (as in the paper's code, per parameter tensor).
    """
    for p in module.parameters():
        if p.grad is None:
            continue
        std = p.grad.std().item() if p.grad.numel() > 1 else 0.0  # std of one value is NaN
        p.grad = p.grad * k + torch.zeros_like(p.grad).normal_(0, std + 1e-8)


def check_modulation(model: MultimodalModel, task: Task, config: TrainConfig, aux_weight: float) -> None:
    """Fail before the first epoch, not at the first step, when OGM-GE cannot work."""
    if config.gradient_modulation != "ogm_ge":
        return
    if not task.exclusive_classes:
        suitable = ", ".join(tasks_where(lambda cls: cls.exclusive_classes))
        raise SchemaError(
            f"gradient_modulation 'ogm_ge' scores the true class's probability, so it needs a target of one class "
            f"per row ({suitable}); this task is {task.name}"
        )
    if not model.has_unimodal_logits:
        raise SchemaError(
            "gradient_modulation 'ogm_ge' needs per-input logits: set model.aux_heads: true "
            "(or use a fusion with its own per-input heads: late, hybrid)"
        )
    if len(model.aux_heads) and not aux_weight:
        raise SchemaError("gradient_modulation 'ogm_ge' scores inputs with the aux heads; they only learn with aux_weight > 0")


def epoch_line(record: dict[str, float], epochs: int, metric_name: str, elapsed: float) -> str:
    """``epoch 2/10  train_loss 0.4123  val_loss 0.3981  val_accuracy 0.8760  (6.1 s; 12.5 s in all)``."""
    shown = ["train_loss", "val_loss", f"val_{metric_name}"]
    values = "  ".join(f"{k} {record[k]:.4f}" for k in dict.fromkeys(shown) if k in record)
    return f"epoch {record['epoch']}/{epochs}  {values}  ({seconds(record['epoch_seconds'])}; {seconds(elapsed)} in all)"


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    metric_name: str = ""
    seconds: float = 0.0


@torch.no_grad()
def run_inference(model: nn.Module, source: BatchSource, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Model outputs, targets and row numbers for a whole split, in the split's order."""
    model.eval()
    outs, targets, rows = [], [], []
    for batch in source.batches(batch_size):
        batch = batch.to(device)
        outs.append(model(batch.inputs).logits.float().cpu())
        if batch.target is not None:
            targets.append(batch.target.cpu())
        rows.append(batch.rows)
    return torch.cat(outs), (torch.cat(targets) if targets else None), torch.cat(rows)


class Collective(Protocol):
    """What data-parallel training adds to the loop: gradients and epoch totals summed over workers."""

    def average_gradients(self, model: nn.Module, count: int) -> None:
        """Make every worker's gradients those of the global batch (this worker's part held ``count`` rows)."""
        ...

    def sum(self, values: list[float]) -> list[float]: ...


def train(
    model: MultimodalModel,
    train_data: BatchSource,
    val_data: BatchSource | None,
    task: Task,
    config: TrainConfig,
    on_improve: Callable[[nn.Module, TrainResult], None] | None = None,
    *,
    aux_weight: float = 0.0,
    collective: Collective | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    log_epochs: bool = True,
) -> TrainResult:
    """Train in place; at the end the model holds the weights of the best validation epoch.

    ``on_improve(model, result)`` runs after each epoch that improves on the best so far,
    with the model holding that epoch's weights and ``result.history`` the epochs so far.
    ``aux_weight`` weighs the per-input loss of a model with aux heads
    (:attr:`tessera.model.ModelConfig.aux_loss_weight`).

    Data-parallel training (:mod:`tessera.scale.train`) runs this same loop on every worker:
    ``train_data`` yields the worker's part of each global batch, ``collective`` sums the
    gradients and the epoch's loss totals, and ``on_epoch_end(state)`` hands out everything
    needed to continue (weights, optimizer, schedule, history, best weights, RNG), which
    ``resume=state`` picks up after a failure; :meth:`Predictor.fit` keeps the same state on disk.

    Torch uses ``config.threads`` threads meanwhile (:mod:`tessera.threads`). Each epoch ends
    with one line (train loss, validation metric, times) through :func:`tessera.progress.log`;
    ``log_epochs=False`` keeps a data-parallel worker other than the first quiet.
    """
    with torch_threads(config.threads):
        return _train(model, train_data, val_data, task, config, on_improve, aux_weight, collective, on_epoch_end, resume, log_epochs)


def _train(model, train_data, val_data, task, config, on_improve, aux_weight, collective, on_epoch_end, resume, log_epochs) -> TrainResult:
    check_modulation(model, task, config, aux_weight)
    modulate = config.gradient_modulation == "ogm_ge"
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    optimizer = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    scheduler = warmup_cosine_schedule(optimizer, steps_per_epoch * config.epochs, config.warmup_fraction)
    metric_name = task.monitor.metric
    sign = 1.0 if task.monitor.higher_is_better else -1.0
    result = TrainResult(metric_name=metric_name)
    best_state, bad_epochs, start, first_epoch = None, 0, time.perf_counter(), 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["rng"])
        if "numpy_rng" in resume:
            np.random.set_state(resume["numpy_rng"])
        result.history, result.best_epoch, result.best_metric = list(resume["history"]), resume["best_epoch"], resume["best_metric"]
        best_state, bad_epochs, first_epoch = resume["best_state"], resume["bad_epochs"], resume["epoch"]
        stopped = config.patience and bad_epochs >= config.patience
        first_epoch = config.epochs if stopped else first_epoch

    for epoch in range(first_epoch, config.epochs):
        model.train()
        t0, seen, loss_sum, aux_sum, steps = time.perf_counter(), 0, 0.0, 0.0, 0
        coeff_sums: dict[str, float] = {}
        with progress_bar(f"epoch {epoch + 1}/{config.epochs}", total=len(train_data), done_line=False) as advance:
            for batch in train_data.batches(config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch):
                batch = batch.to(device)
                output = model(batch.inputs)
                loss = task.loss(output.logits, batch.target)
                total_loss = loss
                unimodal, present = output.unimodal_logits, output.present
                if aux_weight:
                    aux = balanced_aux_loss(task.loss, unimodal, present, batch.target)
                    if aux is not None:
                        total_loss = loss + aux_weight * aux
                        aux_sum += aux.item() * len(batch)
                coeffs = ogm_coefficients(unimodal, present, batch.target, config.ogm_alpha) if modulate else {}
                optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                for name, k in coeffs.items():
                    if k < 1.0:
                        modulate_gradients(model.encoders[name], k)
                    coeff_sums[name] = coeff_sums.get(name, 0.0) + k
                if collective is not None:
                    collective.average_gradients(model, len(batch))
                steps += 1
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                seen += len(batch)
                loss_sum += loss.item() * len(batch)
                advance(len(batch), loss=loss_sum / seen)
        if collective is not None:  # whole-epoch totals over all workers' rows
            loss_sum, aux_sum, seen = collective.sum([loss_sum, aux_sum, float(seen)])
        # train_loss is the fused output's loss alone, comparable with and without the extras.
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "epoch_seconds": time.perf_counter() - t0}
        if aux_weight:
            record["train_aux_loss"] = aux_sum / max(seen, 1)
        record.update({f"ogm_coeff_{n}": k_sum / max(steps, 1) for n, k_sum in coeff_sums.items()})  # epoch means
        if val_data is not None and len(val_data):
            out, y, _ = run_inference(model, val_data, config.batch_size * 2, device)
            record.update({f"val_{k}": v for k, v in task.quick_score(out, y).items()})
        result.history.append(record)
        current = record.get(f"val_{metric_name}", -record["train_loss"] if sign > 0 else record["train_loss"])
        if best_state is None or sign * current > sign * result.best_metric:
            result.best_metric, result.best_epoch, bad_epochs = current, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
            if on_improve is not None:
                on_improve(model, result)
        else:
            bad_epochs += 1
        if log_epochs:
            log(epoch_line(record, config.epochs, metric_name, time.perf_counter() - start))
        if on_epoch_end is not None:
            on_epoch_end(
                {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_metric": result.best_metric,
                    "best_state": best_state,
                    "bad_epochs": bad_epochs,
                }
            )
        if config.patience and bad_epochs >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result
