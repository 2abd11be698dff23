"""Train an :class:`AlignModel` on paired rows: AdamW, warmup then cosine, gradient clipping.

Lean on purpose (the shape of nanoGPT's loop): the optimiser and schedule come from
:mod:`tessera.optim` (shared with the supervised loop), the progress bar from
:mod:`tessera.progress`, and validation is retrieval between the first two inputs.

Mixing in a supervised loss. ``weight_schedule(epoch) -> (w_contrastive, w_supervised)``
weighs the two terms each epoch, e.g. ``lambda e: (1.0, 0.0) if e < 5 else (1.0, 0.5)``
to align first and then also learn the label. The supervised term implemented here is the
cross-entropy of the model's linear ``classifier`` (``build_align_model(classifier=True)``)
on the anchor's embedding, over rows whose batch carries a target; without a classifier or
target it is skipped. Mixing with the *fusion* model's supervised loss
(:class:`tessera.model.MultimodalModel` sharing these encoders) is not implemented yet: it
would add ``w_supervised * task.loss(fusion_model(batch.inputs).logits, batch.target)`` to the
same step, with both models' parameters in the optimizer.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from tessera.align.model import AlignModel, FeatureQueue, embed_split
from tessera.align.retrieval import recall_at_k
from tessera.errors import SchemaError
from tessera.losses import MAX_LOGIT_SCALE
from tessera.pipeline import CachedSplit
from tessera.progress import progress_bar
from tessera.optim import adamw, warmup_cosine_schedule
from tessera.train import resolve_device

WeightSchedule = Callable[[int], tuple[float, float]]


def paired_recall_at_1(model: AlignModel, split: CachedSplit, batch_size: int = 256) -> float:
    """Mean of Recall@1 first->second input and back over unique items (see :func:`paired_retrieval`)."""
    return paired_retrieval(model, split, batch_size, ks=(1,))["recall@1"]


def paired_retrieval(model: AlignModel, split: CachedSplit, batch_size: int = 256, ks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    """Recall@K first->second input and back (their mean), over unique items, with chance beside it.

    Rows that hold the same item (a photo with 5 captions is 5 rows) would otherwise count
    the photo's other captions as misses and score the same query several times (issue 18).
    Items are told apart by their embedding (identical inputs embed identically), each
    direction ranks the unique items of the other input, and an item is relevant to a query
    when some row pairs them. ``chance@k`` is what random rankings score on the same data.
    """
    first, second = list(model.encoders)[:2]
    emb = embed_split(model, split, batch_size)
    rows = emb[first][1] & emb[second][1]
    return unique_item_retrieval(emb[first][0][rows], emb[second][0][rows], ks)


def unique_item_retrieval(a: torch.Tensor, b: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    """:func:`paired_retrieval` on the embeddings of paired rows (row i of ``a`` goes with row i of ``b``)."""
    if not len(a):
        return {"items": [0, 0], **{f"recall@{k}": float("nan") for k in ks}, **{f"chance@{k}": float("nan") for k in ks}}
    items_a, ia = torch.unique(a, dim=0, return_inverse=True)
    items_b, ib = torch.unique(b, dim=0, return_inverse=True)
    pairs = torch.zeros(len(items_a), len(items_b), dtype=torch.bool)
    pairs[ia, ib] = True
    out: dict[str, Any] = {"items": [len(items_a), len(items_b)]}
    forward, backward = recall_at_k(items_a, items_b, pairs, ks), recall_at_k(items_b, items_a, pairs.T, ks)
    for k in ks:
        out[f"recall@{k}"] = 0.5 * (forward[f"recall@{k}"] + backward[f"recall@{k}"])
        out[f"chance@{k}"] = 0.5 * (_chance(pairs, k) + _chance(pairs.T, k))
    return out


def _chance(relevant: torch.Tensor, k: int) -> float:
    """Expected Recall@k of a random ranking: per query, 1 - P(none of its r relevant items in k draws of n)."""
    n = relevant.shape[1]
    r = relevant.sum(1).double()
    k = min(k, n)
    miss = torch.ones_like(r)
    for i in range(k):  # P(the i-th draw misses, given the earlier ones did)
        miss = miss * ((n - r - i).clamp(min=0) / (n - i))
    return float((1 - miss).mean())


def locked_embeddings(model: AlignModel, split: CachedSplit, batch_size: int) -> dict[str, torch.Tensor]:
    """Embeddings of the inputs whose encoder and projection have nothing to train, computed once.

    A locked tower (a frozen pretrained text encoder with a fixed projection, as in LiT: Zhai
    et al. 2022) gives the same vectors every epoch; running it at every step would cost most
    of the training time for nothing.
    """
    names = [
        n for n in model.encoders
        if not any(p.requires_grad for p in (*model.encoders[n].parameters(), *model.heads[n].parameters()))
    ]
    if not names:
        return {}
    was_training = model.training
    emb = embed_split(model, CachedSplit({n: split.inputs[n] for n in names}, split.target, split.rows), batch_size)
    model.train(was_training)
    return {n: emb[n][0] for n in names}


def fit_alignment(
    model: AlignModel,
    train: CachedSplit,
    val: CachedSplit | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    queue_size: int = 0,
    seed: int = 0,
    weight_schedule: WeightSchedule | None = None,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.05,
    grad_clip: float = 1.0,
    device: str = "auto",
) -> list[dict[str, float]]:
    """Train in place; returns one record per epoch (train loss, temperature, ``val_recall@1`` and the rest of :func:`paired_retrieval`).

    Batches drop their last incomplete part: a contrastive batch of one row has no negative.
    ``queue_size`` > 0 keeps that many past embeddings per input as extra negatives.
    """
    if not model.pairs:
        raise SchemaError(f"alignment needs at least two inputs; the model has {list(model.encoders)}")
    dev = resolve_device(device)
    model.to(dev)
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]  # frozen pretrained towers stay out
    optimizer = adamw(trainable, lr=lr, weight_decay=weight_decay)  # no decay on biases, norms, temperature
    scheduler = warmup_cosine_schedule(optimizer, max(1, len(train) // batch_size) * epochs, warmup_fraction)
    queue = FeatureQueue(queue_size, model.dim) if queue_size else None
    history: list[dict[str, float]] = []
    locked = locked_embeddings(model, train, batch_size * 2)
    position = {r: i for i, r in enumerate(train.rows.tolist())} if locked else {}

    for epoch in range(epochs):
        w_con, w_sup = weight_schedule(epoch) if weight_schedule else (1.0, 0.0)
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        with progress_bar(f"align {epoch + 1}/{epochs}", total=len(train)) as advance:
            for batch in train.batches(batch_size, shuffle=True, seed=seed * 1000 + epoch, drop_last=True):
                batch = batch.to(dev)
                emb = {n: model.embed(n, batch.inputs[n]) for n in model.encoders if n not in locked}
                if locked:
                    at = torch.tensor([position[r] for r in batch.rows.tolist()])
                    emb.update({n: e[at].to(dev) for n, e in locked.items()})
                present = {n: batch.inputs[n].present for n in model.encoders}
                terms = []
                if w_con:
                    terms.append((w_con, model.loss(emb, present, queue)))
                if w_sup and batch.target is not None:
                    terms.append((w_sup, model.supervised_loss(emb, present, batch.target)))
                terms = [w * t for w, t in terms if t is not None]
                advance(len(batch))
                if not terms:  # no pair of inputs present together in this batch
                    continue
                loss = torch.stack(terms).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    nn.utils.clip_grad_norm_(trainable, grad_clip)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():  # CLIP clips the scale at 100; open_clip clamps the parameter after each step
                    model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
                if queue is not None:
                    for name, e in emb.items():
                        queue.push(name, e[present[name]])
                seen += len(batch)
                loss_sum += loss.item() * len(batch)
                advance(0, loss=loss_sum / seen)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "temperature": math.exp(-model.logit_scale.item()),
            "epoch_seconds": time.perf_counter() - t0,
        }
        if val is not None and len(val):
            retrieval = paired_retrieval(model, val, batch_size * 2)
            record.update({f"val_{k}": v for k, v in retrieval.items()})
        history.append(record)
    return history
