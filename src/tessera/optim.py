"""The optimiser and learning-rate schedule both training loops use: AdamW, linear warmup, cosine decay.

Weight decay applies to matrices (weights of linear, convolution and embedding layers) only:
decaying biases, norm scales and a contrastive temperature pulls them towards zero for no
benefit (the nanoGPT / open_clip convention). Warmup keeps the first steps of a freshly
initialised model, and of Adam's still-empty moment estimates, from taking full-size steps.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def adamw(params: Iterable[nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``params`` (in order), decaying those with two or more dimensions."""
    params = list(params)
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=lr,
    )


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor at ``step``: a linear ramp over ``warmup`` steps, then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Step it once per optimiser step; ``total`` is the number of steps of the whole run."""
    warmup = int(warmup_fraction * total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
