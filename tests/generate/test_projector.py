"""Projectors map encoder tokens to LM-sized prefix tokens and keep absent inputs masked."""

from __future__ import annotations

import pytest
import torch

from tessera.errors import SchemaError
from tessera.generate.projector import create_projector


def test_mlp_expands_each_token():
    proj = create_projector("mlp", 16, 32, tokens=3)
    x, mask = torch.randn(2, 4, 16), torch.tensor([[True, True, False, False], [True] * 4])
    out, out_mask = proj(x, mask)
    assert out.shape == (2, 12, 32)
    assert out_mask.tolist()[0] == [True] * 6 + [False] * 6


def test_resampler_gives_fixed_tokens_and_masks_absent_rows():
    proj = create_projector("resampler", 16, 32, tokens=5, dim=32, heads=4, depth=2)
    x = torch.randn(3, 7, 16)
    mask = torch.tensor([[True] * 7, [True, True] + [False] * 5, [False] * 7])  # the last row's input is absent
    out, out_mask = proj(x, mask)
    assert out.shape == (3, 5, 32) and torch.isfinite(out).all()
    assert out_mask.tolist() == [[True] * 5, [True] * 5, [False] * 5]
    # masked encoder tokens have no influence
    x2 = x.clone()
    x2[1, 2:] = 100.0
    assert torch.allclose(proj(x2, mask)[0][1], out[1], atol=1e-6)


@pytest.mark.parametrize(
    "kind, options, match",
    [
        ("qformer", {}, "unknown projector 'qformer'"),
        ("mlp", {"layers": 2}, r"unknown option\(s\) \['layers'\]"),
        ("resampler", {"dim": 30, "heads": 4}, "divisible by heads"),
        ("mlp", {"tokens": 0}, "tokens must be >= 1"),
    ],
)
def test_bad_options(kind, options, match):
    with pytest.raises(SchemaError, match=match):
        create_projector(kind, 16, 32, **options)
