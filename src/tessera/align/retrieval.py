"""Retrieval metrics over a shared embedding space: Recall@K and mean average precision.

Scores are dot products, i.e. cosine similarity for the unit vectors :class:`AlignModel`
produces. ``relevant[q, g]`` says which gallery items answer query ``q``: the identity for
paired data (row i's caption retrieves row i's image), a same-class matrix for category
retrieval. Queries with no relevant item are left out of every mean: they can be neither
hit nor missed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _scores(query_emb: ArrayLike, gallery_emb: ArrayLike) -> Tensor:
    query, gallery = (torch.as_tensor(x).detach().float().cpu() for x in (query_emb, gallery_emb))
    return query @ gallery.T


def recall_at_k(
    query_emb: ArrayLike, gallery_emb: ArrayLike, relevant: ArrayLike, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """``{"recall@k": share of queries with a relevant item among their k best-scored}`` for each k.

    Ties between scores are broken by ``torch.topk``'s order, which is unspecified.
    """
    scores = _scores(query_emb, gallery_emb)
    relevant = torch.as_tensor(relevant, dtype=torch.bool).cpu()
    if relevant.shape != scores.shape:
        raise ValueError(f"relevant must be (queries, gallery) = {tuple(scores.shape)}, got {tuple(relevant.shape)}")
    answerable = relevant.any(dim=1)
    if not answerable.any():
        return {f"recall@{k}": float("nan") for k in ks}
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = relevant.gather(1, top)[answerable]  # (Q', K): is the r-th best item relevant
    return {f"recall@{k}": float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


def mean_average_precision(query_emb: ArrayLike, gallery_emb: ArrayLike, relevant: ArrayLike) -> float:
    """Mean over queries of scikit-learn's ``average_precision_score`` of the gallery ranked by score."""
    scores = _scores(query_emb, gallery_emb).numpy()
    relevant = torch.as_tensor(relevant, dtype=torch.bool).cpu().numpy()
    if relevant.shape != scores.shape:
        raise ValueError(f"relevant must be (queries, gallery) = {scores.shape}, got {relevant.shape}")
    aps = [average_precision_score(rel, s) for rel, s in zip(relevant, scores) if rel.any()]
    return float(np.mean(aps)) if aps else float("nan")
