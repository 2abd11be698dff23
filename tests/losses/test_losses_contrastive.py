"""CLIP and SigLIP losses against a hand computation in NumPy, plus the properties training relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tessera.losses import MAX_LOGIT_SCALE, clip_loss, siglip_loss

# 3 pairs of 2-d embeddings, deliberately not unit length: the losses normalise.
A = np.array([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.2]])
B = np.array([[0.9, 0.2], [0.1, 1.5], [1.1, -0.4]])
QUEUE_A = np.array([[0.2, -0.8], [-1.0, 0.1]])  # past embeddings of a: negatives for b's rows
QUEUE_B = np.array([[-0.5, 0.5]])  # past embeddings of b: negatives for a's rows
LOG_SCALE = math.log(1 / 0.07)
LOG_T, BIAS = math.log(10.0), -10.0


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def numpy_clip(a, b, log_scale, past_a=None, past_b=None) -> float:
    s = math.exp(min(log_scale, math.log(100)))
    cand_b = unit(b) if past_b is None else np.vstack([unit(b), unit(past_b)])
    cand_a = unit(a) if past_a is None else np.vstack([unit(a), unit(past_a)])
    n = len(a)
    ab = log_softmax(s * unit(a) @ cand_b.T)[np.arange(n), np.arange(n)]
    ba = log_softmax(s * unit(b) @ cand_a.T)[np.arange(n), np.arange(n)]
    return float(-0.5 * (ab.mean() + ba.mean()))


def numpy_siglip(a, b, log_t, bias, past_a=None, past_b=None) -> float:
    t = math.exp(log_t)
    n = len(a)
    labels = 2 * np.eye(n) - 1
    total = -log_sigmoid(labels * (t * unit(a) @ unit(b).T + bias)).sum()
    if past_b is not None:
        total -= log_sigmoid(-(t * unit(a) @ unit(past_b).T + bias)).sum()
    if past_a is not None:
        total -= log_sigmoid(-(t * unit(b) @ unit(past_a).T + bias)).sum()
    return float(total / n)  # the sum over pairs divided by the batch size, as in the paper and big_vision


def T(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_clip_matches_numpy() -> None:
    got = clip_loss(T(A), T(B), T(LOG_SCALE))
    assert float(got) == pytest.approx(numpy_clip(A, B, LOG_SCALE), rel=1e-10)
    with_queue = clip_loss(T(A), T(B), T(LOG_SCALE), (T(QUEUE_A), T(QUEUE_B)))
    assert float(with_queue) == pytest.approx(numpy_clip(A, B, LOG_SCALE, QUEUE_A, QUEUE_B), rel=1e-10)


def test_siglip_matches_numpy() -> None:
    got = siglip_loss(T(A), T(B), T(LOG_T), T(BIAS))
    assert float(got) == pytest.approx(numpy_siglip(A, B, LOG_T, BIAS), rel=1e-10)
    with_queue = siglip_loss(T(A), T(B), T(LOG_T), T(BIAS), (T(QUEUE_A), T(QUEUE_B)))
    assert float(with_queue) == pytest.approx(numpy_siglip(A, B, LOG_T, BIAS, QUEUE_A, QUEUE_B), rel=1e-10)


def test_siglip_divides_by_batch_size_not_pairs() -> None:
    # At t -> 0 every logit is the bias: n positives and n(n-1) negatives, the total over n rows.
    n = 3
    expected = -(n * math.log(1 / (1 + math.exp(-BIAS))) + n * (n - 1) * math.log(1 / (1 + math.exp(BIAS)))) / n
    assert float(siglip_loss(T(A), T(B), T(-50.0), T(BIAS))) == pytest.approx(expected, rel=1e-9)


def test_scale_is_clamped_at_100() -> None:
    at_cap = clip_loss(T(A), T(B), T(MAX_LOGIT_SCALE))
    assert float(clip_loss(T(A), T(B), T(10.0))) == pytest.approx(float(at_cap))
    assert float(siglip_loss(T(A), T(B), T(10.0), T(BIAS))) == pytest.approx(
        float(siglip_loss(T(A), T(B), T(MAX_LOGIT_SCALE), T(BIAS)))
    )


def test_losses_are_symmetric() -> None:
    a, b, qa, qb = T(A), T(B), T(QUEUE_A), T(QUEUE_B)
    assert float(clip_loss(a, b, T(LOG_SCALE), (qa, qb))) == pytest.approx(
        float(clip_loss(b, a, T(LOG_SCALE), (qb, qa)))
    )
    assert float(siglip_loss(a, b, T(LOG_T), T(BIAS), (qa, qb))) == pytest.approx(
        float(siglip_loss(b, a, T(LOG_T), T(BIAS), (qb, qa)))
    )


def test_aligned_pairs_score_lower_than_shuffled() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    shuffled = x[torch.randperm(16, generator=g)]
    assert clip_loss(x, x, T(LOG_SCALE)) < clip_loss(x, shuffled, T(LOG_SCALE))
    assert siglip_loss(x, x, T(LOG_T), T(BIAS)) < siglip_loss(x, shuffled, T(LOG_T), T(BIAS))


def test_gradients_reach_scale_and_bias() -> None:
    scale = torch.tensor(LOG_SCALE, requires_grad=True)
    a = torch.tensor(A, dtype=torch.float32, requires_grad=True)
    clip_loss(a, T(B).float(), scale).backward()
    assert scale.grad is not None and scale.grad.abs() > 0
    assert a.grad is not None and a.grad.abs().sum() > 0
    t, bias = torch.tensor(LOG_T, requires_grad=True), torch.tensor(BIAS, requires_grad=True)
    siglip_loss(T(A).float(), T(B).float(), t, bias).backward()
    assert t.grad.abs() > 0 and bias.grad.abs() > 0


def test_extra_negatives_increase_the_loss() -> None:
    a, b = T(A), T(B)
    extra = (T(QUEUE_A), T(QUEUE_B))
    assert clip_loss(a, b, T(LOG_SCALE), extra) > clip_loss(a, b, T(LOG_SCALE))
    assert siglip_loss(a, b, T(LOG_T), T(BIAS), extra) > siglip_loss(a, b, T(LOG_T), T(BIAS))
    # One side only, or an empty queue, is accepted too.
    assert clip_loss(a, b, T(LOG_SCALE), (None, T(QUEUE_B))) > clip_loss(a, b, T(LOG_SCALE))
    empty = torch.zeros(0, 2, dtype=torch.float64)
    assert float(siglip_loss(a, b, T(LOG_T), T(BIAS), (empty, empty))) == pytest.approx(
        float(siglip_loss(a, b, T(LOG_T), T(BIAS)))
    )
