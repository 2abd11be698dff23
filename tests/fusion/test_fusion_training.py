"""Every fusion can learn a label that needs two inputs, and plugs into the real model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tessera.fusion import FUSIONS, create_fusion
from tessera.predictor import Predictor

CLASSES = 4
CASES: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in sorted(FUSIONS)] + [
    ("late", {"combine": "learned"}),
    ("late", {"combine": "stacking"}),
]


def xor_like_batch(n: int = 16, seed: int = 0) -> tuple[dict, dict, dict, torch.Tensor]:
    """Label = 2 * bit(a) + bit(b): a is pooled, b is padded tokens, c is noise."""
    g = torch.Generator().manual_seed(seed)
    bit_a = torch.arange(n) % 2
    bit_b = (torch.arange(n) // 2) % 2
    sign = lambda bit: (2 * bit - 1).float()  # noqa: E731
    a = torch.randn(n, 8, generator=g)
    a[:, 0] = sign(bit_a) * (a[:, 0].abs() + 0.5)
    lengths = torch.randint(1, 5, (n,), generator=g)
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)
    b = torch.randn(n, 4, 6, generator=g)
    b[..., 0] = sign(bit_b).unsqueeze(1) * (b[..., 0].abs() + 0.5)
    b = b * mask.unsqueeze(-1)
    c = torch.randn(n, 5, generator=g)
    present = {k: torch.ones(n, dtype=torch.bool) for k in "abc"}
    return {"a": a, "b": b, "c": c}, {"a": None, "b": mask, "c": None}, present, 2 * bit_a + bit_b


def case_id(value: Any) -> str:
    return value if isinstance(value, str) else "-".join(map(str, value.values()))


@pytest.mark.parametrize("name,options", CASES, ids=case_id)
def test_overfits_a_label_that_needs_two_inputs(name, options):
    torch.manual_seed(0)
    dims = {"a": 8, "b": 6, "c": 5}
    if getattr(FUSIONS[name], "produces_logits", False):
        model: nn.Module = create_fusion(name, dims, num_outputs=CLASSES, dropout=0.0, **options)
        head: nn.Module = nn.Identity()
    else:
        model = create_fusion(name, dims, dropout=0.0, **options)
        head = nn.Linear(model.output_dim, CLASSES)
    features, masks, present, y = xor_like_batch()
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(120):  # all reach 100% by ~100 steps across seeds
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(model(features, masks, present).fused), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (head(model(features, masks, present).fused).argmax(dim=1) == y).float().mean().item()
    assert accuracy == 1.0, (name, accuracy, loss.item())


@pytest.mark.parametrize("name", ["early", "perceiver", "cross_attention", "tensor", "late", "hybrid"])
def test_plugs_into_the_model(name, tiny_table, tiny_schema):
    p = Predictor(model={"fusion": name, "dim": 16}, train={"epochs": 1, "batch_size": 16})
    p.fit(tiny_table, schema=tiny_schema)
    proba = p.predict_proba(tiny_table).to_numpy()
    assert proba.shape == (48, 4)
    assert (abs(proba.sum(axis=1) - 1) < 1e-4).all()
