"""The training loop: AdamW, linear warmup then cosine decay, gradient clipping, early stopping.

A lean loop of our own rather than Lightning: the whole thing is this file, it runs the
same on cached tensors and on streamed batches, and determinism with a seed is easy to
see. Checkpointing is a callback so the caller decides where a "best" model is written.

The task (:mod:`tessera.tasks`) supplies the loss, the quick validation score and which of
its numbers early stopping watches. Two optional remedies for modality imbalance (one input
learns fast and starves the others) use the per-input logits a model returns in its
:class:`~tessera.model.ModelOutput`: a balanced auxiliary loss (``model.aux_heads`` with
``aux_weight``, on by default) and OGM-GE gradient modulation (``gradient_modulation``).

Fusion is slow to start: the fused score can sit flat for epochs while one input's encoder
is still learning, and a stopping rule that watches only the fused score ends the run
before that input helps. So early stopping (:class:`StoppingRule`) never stops before
``min_epochs`` (half the budget by default), counts patience relative to the budget, and
counts an epoch as progress while any input's own validation score still improves; the
schedule decays to zero at the end of the budget whatever happens, and the best
validation epoch's weights are restored. Last, :func:`choose_output` makes the fused model
no worse than its best single input on validation: it keeps the fused logits unless one
input's own head, or a blend of the fused logits with the heads, scores better, and says so.
"""

from __future__ import annotations

import copy
import logging
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
from tessera.tasks.base import Goal

if TYPE_CHECKING:
    from tessera.model import MultimodalModel

logger = logging.getLogger("tessera.train")


class TrainConfig(DataSettings):
    """The ``train`` section: the optimisation, plus how the run splits and reads its rows (:class:`DataSettings`).

    Predicting, evaluating and serving use an :class:`~tessera.predictor.InferenceConfig` instead.
    """

    section: ClassVar[str] = "train"
    epochs: Annotated[int, Field(ge=1)] = 10  # the budget: the learning rate decays to zero at its end
    batch_size: Annotated[int, Field(ge=1)] = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    # Epochs without progress (see StoppingRule) before stopping; None: a quarter of the
    # budget, at least 3; 0: never stop early.
    patience: Annotated[int, Field(ge=0)] | None = None
    min_epochs: Annotated[int, Field(ge=1)] | None = None  # never stop before this epoch; None: half the budget
    fusion_fallback: bool = True  # answer with the input heads, or a blend, where they beat the fused output on validation
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
    # What the model answers with, as :func:`choose_output` chose it on validation (None: not chosen).
    output: dict[str, Any] | None = None
    stopped_early: bool = False


@dataclass
class StoppingRule:
    """When training stops early: after ``patience`` epochs in a row without progress, never before ``min_epochs``.

    Progress is a better fused score, or a better own score of any input (its head's score
    over the rows that have it). And patience only starts counting once the fused score and
    every input's own score have risen above their first epoch's: a model that has not
    started learning, or an input that has not started helping yet, is not "stalled", it is
    early, and fused scores often sit flat for epochs before a slow input kicks in.
    ``patience`` 0 never stops. The defaults scale with the budget (:meth:`for_budget`).
    """

    goal: Goal
    patience: int
    min_epochs: int
    best: float | None = None
    best_inputs: dict[str, float] = field(default_factory=dict)
    waiting: list[str] | None = None  # the parts (the fused output "", inputs by name) not yet above their first score
    stale: int = 0

    @classmethod
    def for_budget(cls, config: TrainConfig, goal: Goal) -> "StoppingRule":
        """Patience a quarter of the budget (at least 3) and a minimum of half of it, unless the config sets them."""
        patience = max(3, math.ceil(config.epochs / 4)) if config.patience is None else config.patience
        min_epochs = math.ceil(config.epochs / 2) if config.min_epochs is None else config.min_epochs
        return cls(goal, patience, min_epochs)

    def update(self, score: float, inputs: dict[str, float] | None = None) -> bool:
        """Record one epoch's scores; True when the fused score is the best so far (keep these weights)."""
        inputs = inputs or {}
        if self.waiting is None:  # the first epoch sets the marks to rise above
            self.waiting = ["", *inputs]
        improved = self.best is None or self.goal.better(score, self.best)
        risen = {""} if improved and self.best is not None else set()
        if improved:
            self.best = score
        for name, value in inputs.items():
            if name not in self.best_inputs or self.goal.better(value, self.best_inputs[name]):
                risen |= {name} if name in self.best_inputs else set()
                self.best_inputs[name] = value
        self.waiting = [part for part in self.waiting if part not in risen]
        self.stale = 0 if improved or risen or self.waiting else self.stale + 1
        return improved

    def should_stop(self, epoch: int) -> bool:
        """Whether to stop after ``epoch`` (counted from 1)."""
        return bool(self.patience) and epoch >= self.min_epochs and self.stale >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_inputs": dict(self.best_inputs), "waiting": self.waiting, "stale": self.stale}


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


@dataclass
class SplitOutputs:
    """A whole split's model outputs: the answer, each input's own logits and presence, and the targets."""

    logits: torch.Tensor
    unimodal: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    target: torch.Tensor


@torch.no_grad()
def split_outputs(model: MultimodalModel, source: BatchSource, batch_size: int, device: torch.device) -> SplitOutputs:
    """:func:`run_inference` plus what validation needs to score each input on its own."""
    model.eval()
    logits, unimodal, present, targets = [], {}, {}, []
    for batch in source.batches(batch_size):
        batch = batch.to(device)
        out = model(batch.inputs)
        logits.append(out.logits.float().cpu())
        for name, value in out.unimodal_logits.items():
            unimodal.setdefault(name, []).append(value.float().cpu())
            present.setdefault(name, []).append(out.present[name].cpu())
        targets.append(batch.target.cpu())
    return SplitOutputs(
        torch.cat(logits),
        {n: torch.cat(v) for n, v in unimodal.items()},
        {n: torch.cat(v) for n, v in present.items()},
        torch.cat(targets),
    )


def input_scores(task: Task, outputs: SplitOutputs) -> dict[str, float]:
    """Each input's own monitored score, over the rows that have it (inputs present in no row are left out)."""
    metric = task.monitor.metric
    return {
        name: task.quick_score(logits[outputs.present[name]], outputs.target[outputs.present[name]])[metric]
        for name, logits in outputs.unimodal.items()
        if outputs.present[name].any()
    }


def output_candidates(names: list[str], own: dict[str, float], goal: Goal) -> dict[str, torch.Tensor]:
    """The answers :func:`choose_output` tries, as output weights over (fused, *names), the fused output first.

    Each input alone (the fallback), the fused output blended with the input that does best
    on its own, and with every input. Few candidates on purpose: each one more is one more
    chance to pick a blend that is only lucky on the validation rows.
    """
    from tessera.model import fused_only

    m = len(names)
    candidates = {"fused": fused_only(m)}
    alone = {}
    for i, name in enumerate(names):
        alone[name] = torch.zeros(1 + m)
        alone[name][1 + i] = 1.0
        candidates[f"{name} only"] = alone[name]
    scored = [n for n in names if n in own]
    if scored:
        best = scored[0]
        for name in scored[1:]:
            best = name if goal.better(own[name], own[best]) else best
        candidates[f"fused + {best}"] = (fused_only(m) + alone[best]) / 2
    if m > 1:
        candidates["fused + every input"] = torch.full((1 + m,), 1.0 / (1 + m))
    return candidates


def choose_output(task: Task, outputs: SplitOutputs, names: list[str]) -> dict[str, Any]:
    """The answer that scores best on validation: the fused logits, one input's own, or an equal blend.

    ``outputs`` holds the fused logits (the model answering with them alone). Ties keep the
    earlier candidate, so the fused output stays unless something is strictly better.
    Returns the chosen label, its weights by part and every candidate's score.
    """
    from tessera.model import blend_logits

    metric, goal = task.monitor.metric, task.monitor
    parts, present = [outputs.unimodal[n] for n in names], [outputs.present[n] for n in names]
    candidates = output_candidates(names, input_scores(task, outputs), goal)
    scores = {
        label: task.quick_score(blend_logits(outputs.logits, parts, present, w), outputs.target)[metric]
        for label, w in candidates.items()
    }
    chosen = "fused"
    for label, value in scores.items():
        if goal.better(value, scores[chosen]):
            chosen = label
    weights = candidates[chosen]
    return {
        "chosen": chosen,
        "weights": {"fused": float(weights[0]), **{n: float(weights[1 + i]) for i, n in enumerate(names)}},
        "metric": metric,
        "val_scores": scores,
    }


def describe_output(output: dict[str, Any]) -> str:
    """What the model answers with, and why, for logs and CLIs ("the model ...")."""
    scores, chosen, metric = output["val_scores"], output["chosen"], output["metric"]
    if chosen == "fused":
        return f"answers with its fused output (validation {metric} {scores['fused']:.4f}; no input head or blend did better)"
    return (
        f"answers with {chosen} instead of its fused output alone (validation {metric} {scores[chosen]:.4f} "
        f"against {scores['fused']:.4f})"
    )


class Collective(Protocol):
    """What data-parallel training adds to the loop: gradients and epoch totals summed over workers."""

    def average_gradients(self, model: nn.Module, count: int) -> None:
        """Make every worker's gradients those of the global batch (this worker's part held ``count`` rows)."""
        ...

    def sum(self, values: list[float]) -> list[float]: ...


@dataclass
class Loop:
    """What every step of one run uses: the model and task, its settings, the optimiser and schedule."""

    model: MultimodalModel
    task: Task
    config: TrainConfig
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    aux_weight: float
    collective: Collective | None


@dataclass
class EpochTotals:
    """Running sums over one epoch's batches, for its history record."""

    seen: float = 0
    loss: float = 0.0  # the fused output's loss alone
    aux: float = 0.0
    steps: int = 0
    coeffs: dict[str, float] = field(default_factory=dict)  # OGM-GE's k per input, summed over steps


def train_step(loop: Loop, batch: Batch, totals: EpochTotals) -> None:
    """One optimiser step: the fused loss plus the weighted aux loss, OGM-GE, gradient sharing, clipping."""
    model, config = loop.model, loop.config
    output = model(batch.inputs)
    loss = loop.task.loss(output.logits, batch.target)
    total_loss = loss
    unimodal, present = output.unimodal_logits, output.present
    if loop.aux_weight:
        aux = balanced_aux_loss(loop.task.loss, unimodal, present, batch.target)
        if aux is not None:
            total_loss = loss + loop.aux_weight * aux
            totals.aux += aux.item() * len(batch)
    modulate = config.gradient_modulation == "ogm_ge"
    coeffs = ogm_coefficients(unimodal, present, batch.target, config.ogm_alpha) if modulate else {}
    loop.optimizer.zero_grad(set_to_none=True)
    total_loss.backward()
    for name, k in coeffs.items():
        if k < 1.0:
            modulate_gradients(model.encoders[name], k)
        totals.coeffs[name] = totals.coeffs.get(name, 0.0) + k
    if loop.collective is not None:
        loop.collective.average_gradients(model, len(batch))
    if config.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    loop.optimizer.step()
    loop.scheduler.step()
    totals.steps += 1
    totals.seen += len(batch)
    totals.loss += loss.item() * len(batch)


def train_epoch(loop: Loop, train_data: BatchSource, epoch: int) -> dict[str, float]:
    """One pass over the training rows (shuffled by seed and epoch); the epoch's history record so far."""
    config = loop.config
    loop.model.train()
    t0, totals = time.perf_counter(), EpochTotals()
    with progress_bar(f"epoch {epoch + 1}/{config.epochs}", total=len(train_data), done_line=False) as advance:
        for batch in train_data.batches(config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch):
            train_step(loop, batch.to(loop.device), totals)
            advance(len(batch), loss=totals.loss / totals.seen)
    loss_sum, aux_sum, seen = totals.loss, totals.aux, totals.seen
    if loop.collective is not None:  # whole-epoch totals over all workers' rows
        loss_sum, aux_sum, seen = loop.collective.sum([loss_sum, aux_sum, float(seen)])
    # train_loss is the fused output's loss alone, comparable with and without the extras.
    record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "epoch_seconds": time.perf_counter() - t0}
    if loop.aux_weight:
        record["train_aux_loss"] = aux_sum / max(seen, 1)
    record.update({f"ogm_coeff_{n}": k_sum / max(totals.steps, 1) for n, k_sum in totals.coeffs.items()})  # epoch means
    return record


def validate(loop: Loop, val_data: BatchSource) -> tuple[dict[str, float], dict[str, float]]:
    """The epoch's validation scores for its record (fused, then each input's own head), and the inputs' own."""
    outputs = split_outputs(loop.model, val_data, loop.config.batch_size * 2, loop.device)
    scores = {f"val_{k}": v for k, v in loop.task.quick_score(outputs.logits, outputs.target).items()}
    own = input_scores(loop.task, outputs)
    scores.update({f"val_{loop.task.monitor.metric}_{n}": v for n, v in own.items()})
    return scores, own


def run_state(
    loop: Loop, epoch: int, result: TrainResult, best_state: dict | None, rule: StoppingRule
) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` (``train(resume=...)``), as ``on_epoch_end`` hands it out."""
    return {
        "epoch": epoch,
        "model": loop.model.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "best_state": best_state,
        "bad_epochs": rule.stale,
        "stopping": rule.state(),
    }


def resume_run(loop: Loop, state: dict[str, Any], result: TrainResult, rule: StoppingRule) -> tuple[dict | None, int]:
    """Load a :func:`run_state` into the loop, result and stopping rule; the best weights and the epoch to start at.

    States saved before the stopping rule waited for every input have only ``bad_epochs``.
    """
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if "numpy_rng" in state:  # states saved before it was kept
        np.random.set_state(state["numpy_rng"])
    result.history = list(state["history"])
    result.best_epoch, result.best_metric = state["best_epoch"], state["best_metric"]
    stopping = state.get("stopping") or {
        "best": state["best_metric"], "best_inputs": {}, "waiting": [], "stale": state["bad_epochs"]
    }
    rule.best, rule.best_inputs, rule.waiting, rule.stale = (
        stopping["best"], dict(stopping["best_inputs"]), stopping["waiting"], stopping["stale"]
    )
    first_epoch = loop.config.epochs if rule.should_stop(state["epoch"]) else state["epoch"]  # stopped: nothing to run
    return state["best_state"], first_epoch


def settle_output(loop: Loop, val_data: BatchSource) -> dict[str, Any]:
    """Choose the answer on validation (:func:`choose_output`), set it in the model, and say so unless it is fused."""
    model = loop.model
    outputs = split_outputs(model, val_data, loop.config.batch_size * 2, loop.device)
    output = choose_output(loop.task, outputs, list(model.encoders))
    model.output_weights.copy_(torch.tensor([output["weights"][k] for k in ["fused", *model.encoders]]))
    if output["chosen"] != "fused":
        logger.warning("fusion fallback: the model %s", describe_output(output))
    return output


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
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    # Data-parallel workers each see part of the rows; the answer is chosen where all of validation is.
    select = config.fusion_fallback and model.has_unimodal_logits and collective is None and val_data is not None
    if select:
        from tessera.model import fused_only

        model.output_weights.copy_(fused_only(len(model.encoders)))  # chosen again at the end
    optimizer = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total_steps = math.ceil(len(train_data) / config.batch_size) * config.epochs
    scheduler = warmup_cosine_schedule(optimizer, total_steps, config.warmup_fraction)
    loop = Loop(model, task, config, device, optimizer, scheduler, aux_weight, collective)
    validated = val_data is not None and len(val_data) > 0
    # Without validation rows the training loss is all there is to watch.
    rule = StoppingRule.for_budget(config, task.monitor if validated else Goal("train_loss", higher_is_better=False))
    result = TrainResult(metric_name=task.monitor.metric)
    best_state, start, first_epoch = None, time.perf_counter(), 0
    if resume is not None:
        best_state, first_epoch = resume_run(loop, resume, result, rule)

    for epoch in range(first_epoch, config.epochs):
        record = train_epoch(loop, train_data, epoch)
        own: dict[str, float] = {}
        if validated:
            scores, own = validate(loop, val_data)
            record.update(scores)
        result.history.append(record)
        current = record[f"val_{result.metric_name}"] if validated else record["train_loss"]
        if rule.update(current, own):
            result.best_metric, result.best_epoch = current, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            if on_improve is not None:
                on_improve(model, result)
        if log_epochs:
            log(epoch_line(record, config.epochs, result.metric_name, time.perf_counter() - start))
        if on_epoch_end is not None:
            on_epoch_end(run_state(loop, epoch + 1, result, best_state, rule))
        if rule.should_stop(epoch + 1):
            result.stopped_early = epoch + 1 < config.epochs
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if select:
        result.output = settle_output(loop, val_data)
    result.seconds = time.perf_counter() - start
    return result
