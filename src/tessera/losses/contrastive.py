"""Contrastive losses that pull paired embeddings of two modalities together, in one file (open_clip style).

* :func:`clip_loss`: symmetric InfoNCE, a softmax over every candidate of the other modality
  in both directions (Radford et al. 2021, "Learning Transferable Visual Models From
  Natural Language Supervision").
* :func:`siglip_loss`: an independent binary decision per pair (Zhai et al. 2023, "Sigmoid
  Loss for Language Image Pre-Training"), which needs no batch-wide normalisation and does
  better than softmax at small batch sizes, the usual case on one machine.

Both take ``logit_scale`` as a log-temperature: the logits are ``exp(logit_scale) * cos``,
with ``logit_scale`` clamped at ln(100) so the scale never exceeds 100 (CLIP clips it there
"to prevent training instability"). Embeddings are L2-normalised here, so callers may pass
raw projections; normalising twice changes nothing.

``extra_negatives = (past_a, past_b)`` appends earlier embeddings (a feature queue, MoCo:
He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning") as
further candidates: ``past_b`` to the columns that rows of ``a`` are scored against, and
``past_a`` likewise for ``b``. Each is ``(B2, D)`` or None; they are only ever negatives.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

MAX_LOGIT_SCALE = math.log(100.0)

ExtraNegatives = tuple[Tensor | None, Tensor | None] | None


def _candidates(x: Tensor, past: Tensor | None) -> Tensor:
    """The normalised batch, with the queue's past embeddings appended after it (positives stay on the diagonal)."""
    x = F.normalize(x, dim=-1)
    return x if past is None or not len(past) else torch.cat([x, F.normalize(past.to(x.dtype), dim=-1)])


def clip_loss(a: Tensor, b: Tensor, logit_scale: Tensor, extra_negatives: ExtraNegatives = None) -> Tensor:
    """Symmetric InfoNCE: the mean of cross-entropy a->b and b->a, row i's positive being column i.

    ``loss = 1/2 [ mean_i -log softmax_j(s * a_i.b_j)[i] + mean_i -log softmax_j(s * b_i.a_j)[i] ]``
    with ``s = exp(min(logit_scale, ln 100))`` and a, b L2-normalised.
    """
    past_a, past_b = extra_negatives or (None, None)
    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    labels = torch.arange(a.shape[0], device=a.device)
    logits_ab = scale * a_n @ _candidates(b, past_b).T  # (B, B + B2)
    logits_ba = scale * b_n @ _candidates(a, past_a).T
    return 0.5 * (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels))


def siglip_loss(
    a: Tensor, b: Tensor, logit_scale: Tensor, logit_bias: Tensor, extra_negatives: ExtraNegatives = None
) -> Tensor:
    """Pairwise sigmoid loss ``-1/B * sum_ij log sigmoid(z_ij * (t * a_i.b_j + bias))``, z_ij = +1 if i = j else -1.

    The sum over all pairs divided by the batch size B (not by B^2) follows the paper's
    Algorithm 1 and big_vision's trainer (``mean`` over rows of the ``sum`` over columns),
    so each row carries one positive and its B-1 negatives at full weight. The B x B
    matrix is symmetric in a and b already; queue negatives add ``a`` against ``past_b``
    and ``b`` against ``past_a``, still divided by B.
    """
    past_a, past_b = extra_negatives or (None, None)
    t = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    logits = t * a_n @ b_n.T + logit_bias
    labels = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    total = -F.logsigmoid(labels * logits).sum()
    for query, past in ((a_n, past_b), (b_n, past_a)):
        if past is not None and len(past):
            total = total - F.logsigmoid(-(t * query @ F.normalize(past.to(query.dtype), dim=-1).T + logit_bias)).sum()
    return total / n
