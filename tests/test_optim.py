"""The optimiser and schedule both training loops share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tessera.optim import adamw, warmup_cosine, warmup_cosine_schedule


def test_warmup_cosine_values():
    total, warmup = 100, 10
    assert warmup_cosine(0, total, warmup) == pytest.approx(0.1)  # linear ramp to the full rate
    assert warmup_cosine(4, total, warmup) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)  # cosine starts at the top
    assert warmup_cosine(55, total, warmup) == pytest.approx(0.5)  # halfway through the decay
    assert warmup_cosine(100, total, warmup) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(150, total, warmup) == pytest.approx(0.0, abs=1e-12)  # clamped past the end
    assert warmup_cosine(0, 10, 0) == pytest.approx(1.0)  # no warmup


def test_adamw_decays_matrices_only_and_keeps_parameter_order():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    opt = adamw(model.parameters(), lr=0.1, weight_decay=0.3)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.3 and plain["weight_decay"] == 0.0
    assert [p.shape for p in decayed["params"]] == [(4, 3), (2, 4)]
    assert [p.shape for p in plain["params"]] == [(4,), (4,), (4,), (2,)]  # biases and the norm's scale and shift


def test_schedule_follows_warmup_cosine_step_by_step():
    param = nn.Parameter(torch.zeros(2, 2))
    opt = adamw([param], lr=1.0, weight_decay=0.0)
    schedule = warmup_cosine_schedule(opt, total=20, warmup_fraction=0.25)  # 5 warmup steps
    seen = []
    for _ in range(22):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert seen == pytest.approx([warmup_cosine(s, 20, 5) for s in range(22)])
