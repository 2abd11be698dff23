"""Recall@K and mAP on a hand-worked example, and mAP against scikit-learn's ranking AP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score

from tessera.align import mean_average_precision, recall_at_k

# Queries and gallery in 1-d plus a constant: scores are q * g, so ranking is easy to read off.
# gallery values 4, 3, 2, 1 (index 0..3); query 0 scores them 4,3,2,1, query 1 scores them -4,-3,-2,-1.
GALLERY = torch.tensor([[4.0], [3.0], [2.0], [1.0]])
QUERIES = torch.tensor([[1.0], [-1.0], [1.0]])
RELEVANT = torch.tensor(
    [
        [False, True, False, True],  # query 0 ranks 0,1,2,3: relevant at ranks 2 and 4
        [True, False, False, False],  # query 1 ranks 3,2,1,0: relevant at rank 4
        [False, False, False, False],  # query 2: nothing relevant, left out of every mean
    ]
)


def test_recall_at_k_by_hand() -> None:
    got = recall_at_k(QUERIES, GALLERY, RELEVANT, ks=(1, 2, 4, 10))
    assert got == {"recall@1": 0.0, "recall@2": 0.5, "recall@4": 1.0, "recall@10": 1.0}


def test_map_by_hand() -> None:
    # query 0: precision 1/2 at rank 2, 2/4 at rank 4 -> AP 0.5; query 1: 1/4 at rank 4 -> AP 0.25
    assert mean_average_precision(QUERIES, GALLERY, RELEVANT) == pytest.approx((0.5 + 0.25) / 2)


def test_identity_relevance_and_numpy_inputs() -> None:
    x = np.eye(5, dtype=np.float32)
    assert recall_at_k(x, x, np.eye(5, dtype=bool), ks=(1,)) == {"recall@1": 1.0}
    assert mean_average_precision(x, x, np.eye(5, dtype=bool)) == pytest.approx(1.0)
    assert np.isnan(recall_at_k(x, x, np.zeros((5, 5), dtype=bool))["recall@1"])
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(x, x, np.eye(4, dtype=bool))


def test_map_agrees_with_sklearn_ranking_ap() -> None:
    # Continuous random scores have no ties, where label-ranking AP equals the mean of per-query AP.
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(12, 6, generator=g), torch.randn(30, 6, generator=g)
    relevant = torch.rand(12, 30, generator=g) < 0.2
    relevant[:, 0] = True  # every query has something to find
    expected = label_ranking_average_precision_score(relevant.numpy(), (q @ gal.T).numpy())
    assert mean_average_precision(q, gal, relevant) == pytest.approx(expected, rel=1e-6)
