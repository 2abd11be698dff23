"""The training loop: AdamW, linear warmup then cosine decay, gradient clipping, early stopping.

A lean loop of our own rather than Lightning: the whole thing is this file, it runs the
same on cached tensors and on streamed batches, and determinism with a seed is easy to
see. Checkpointing is a callback so the caller decides where a "best" model is written.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tessera.errors import SchemaError
from tessera.pipeline import Batch
from tessera.progress import progress_bar


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0
    num_workers: int | None = None  # decoding processes; None = up to 4
    cache: bool = True  # decode every row once and keep tensors in memory
    max_train_rows: int | None = None  # a quick run on a subset
    on_error: str = "raise"  # or "skip": drop unusable rows, warn, write a report
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SchemaError(f"train config: unknown key(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**d)
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
            raise SchemaError("train config: epochs and batch_size must be >= 1 and lr > 0")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "multiclass":
        return lambda out, y: F.cross_entropy(out, y.long())
    if task == "multilabel":
        return lambda out, y: F.binary_cross_entropy_with_logits(out, y.float())
    return lambda out, y: F.mse_loss(out.squeeze(-1), y.float())


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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
        outs.append(model(batch.inputs).float().cpu())
        if batch.target is not None:
            targets.append(batch.target.cpu())
        rows.append(batch.rows)
    return torch.cat(outs), (torch.cat(targets) if targets else None), torch.cat(rows)


def score(task: str, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Quick metrics for training-time monitoring (the evaluation module has the full set)."""
    loss = float(loss_fn(task)(outputs, target))
    if task == "multiclass":
        return {"loss": loss, "accuracy": float((outputs.argmax(-1) == target).float().mean())}
    if task == "multilabel":
        return {"loss": loss, "accuracy": float(((outputs > 0) == (target > 0.5)).float().mean())}
    return {"loss": loss}


def train(
    model: nn.Module,
    train_data: BatchSource,
    val_data: BatchSource | None,
    task: str,
    config: TrainConfig,
    on_improve: Callable[[nn.Module, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train in place; at the end the model holds the weights of the best validation epoch."""
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_fraction * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    criterion = loss_fn(task)
    metric_name = "accuracy" if task in ("multiclass", "multilabel") else "loss"
    sign = 1.0 if metric_name == "accuracy" else -1.0
    result = TrainResult(metric_name=metric_name)
    best_state, bad_epochs, start = None, 0, time.perf_counter()

    for epoch in range(config.epochs):
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        with progress_bar(f"epoch {epoch + 1}/{config.epochs}", total=len(train_data)) as advance:
            for batch in train_data.batches(config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch):
                batch = batch.to(device)
                loss = criterion(model(batch.inputs), batch.target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                seen += len(batch)
                loss_sum += loss.item() * len(batch)
                advance(len(batch), loss=loss_sum / seen)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "epoch_seconds": time.perf_counter() - t0}
        if val_data is not None and len(val_data):
            out, y, _ = run_inference(model, val_data, config.batch_size * 2, device)
            record.update({f"val_{k}": v for k, v in score(task, out, y).items()})
        result.history.append(record)
        current = record.get(f"val_{metric_name}", -record["train_loss"] if sign > 0 else record["train_loss"])
        if best_state is None or sign * current > sign * result.best_metric:
            result.best_metric, result.best_epoch, bad_epochs = current, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
            if on_improve is not None:
                on_improve(model, record)
        else:
            bad_epochs += 1
            if config.patience and bad_epochs >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result
