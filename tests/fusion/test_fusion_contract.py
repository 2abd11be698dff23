"""Every registered fusion keeps the contract: shapes, masks, absent inputs, gradients, options."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tessera.errors import SchemaError
from tessera.fusion import FUSIONS, Fusion, FusionOutput, create_fusion

DIMS = {"a": 8, "b": 6, "c": 4}  # a, c pooled; b tokens (B, 5, 6) with a mask
NUM_OUTPUTS = 3
# Presence per sample: all / b absent / c absent / only a / only b / none at all.
PRESENT = {
    "a": [1, 1, 1, 1, 0, 0],
    "b": [1, 0, 1, 0, 1, 0],
    "c": [1, 1, 0, 0, 0, 0],
}
B_LENGTHS = [5, 3, 1, 2, 4, 0]

CASES: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in sorted(FUSIONS)] + [
    ("late", {"combine": "learned"}),
    ("late", {"combine": "stacking"}),
    ("hybrid", {"combine": "stacking"}),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, options = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def make(name: str, dims: dict[str, int] = DIMS, **options: Any) -> nn.Module:
    if getattr(FUSIONS[name], "produces_logits", False):
        options.setdefault("num_outputs", NUM_OUTPUTS)
    return create_fusion(name, dims, **options)


def make_inputs(seed: int = 0) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(seed)
    present = {n: torch.tensor(v, dtype=torch.bool) for n, v in PRESENT.items()}
    n = len(B_LENGTHS)
    b_mask = (torch.arange(5).unsqueeze(0) < torch.tensor(B_LENGTHS).unsqueeze(1)) & present["b"].unsqueeze(1)
    features = {
        "a": torch.randn(n, 8, generator=g),
        "b": torch.randn(n, 5, 6, generator=g) * b_mask.unsqueeze(-1),  # encoders zero padding and absent rows
        "c": torch.randn(n, 4, generator=g),
    }
    for name in ("a", "c"):
        features[name] = features[name] * present[name].unsqueeze(-1)
    return features, {"a": None, "b": b_mask, "c": None}, present


@pytest.fixture(params=CASES, ids=case_id)
def fusion(request) -> nn.Module:
    torch.manual_seed(0)
    name, options = request.param
    return make(name, **options)


def test_output_shape_and_finite(fusion):
    features, masks, present = make_inputs()
    result = fusion(features, masks, present)
    assert isinstance(fusion, Fusion) and isinstance(result, FusionOutput)
    assert bool(result.unimodal_logits) == fusion.produces_logits  # only fusions with per-input heads return them
    out = result.fused
    assert out.shape == (len(B_LENGTHS), fusion.output_dim)
    assert torch.isfinite(out).all()  # includes a sample with one input and one with none


def test_absent_inputs_and_padding_do_not_change_output(fusion):
    fusion.eval()
    features, masks, present = make_inputs()
    with torch.no_grad():
        before = fusion(features, masks, present).fused
    g = torch.Generator().manual_seed(1)
    noisy = dict(features)
    for name in ("a", "c"):
        absent = ~present[name]
        junk = 100 * torch.randn(features[name].shape, generator=g)
        noisy[name] = torch.where(absent.unsqueeze(-1), junk, features[name])
    # Padding of present rows and every token of absent rows: all masked out.
    junk = 100 * torch.randn(features["b"].shape, generator=g)
    noisy["b"] = torch.where(masks["b"].unsqueeze(-1), features["b"], junk)
    with torch.no_grad():
        after = fusion(noisy, masks, present).fused
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_only_one_input_present_is_finite_with_gradients(fusion):
    features, masks, present = make_inputs()
    only_b = {n: torch.zeros_like(p) if n != "b" else p | True for n, p in present.items()}
    masks = {**masks, "b": masks["b"] | (torch.arange(5) == 0)}  # every row has at least one valid b token
    features = {n: x if n == "b" else torch.zeros_like(x) for n, x in features.items()}
    out = fusion(features, masks, only_b).fused
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in fusion.parameters())


def test_gradients_reach_every_parameter(fusion):
    fusion.eval()  # no dropout: a dropped unit is not a dead parameter
    features, masks, _ = make_inputs()
    n = len(B_LENGTHS)
    all_present = {name: torch.ones(n, dtype=torch.bool) for name in DIMS}
    masks = {**masks, "b": torch.arange(5).unsqueeze(0) < torch.tensor([5, 3, 1, 2, 4, 1]).unsqueeze(1)}
    features = {name: torch.randn_like(x) for name, x in features.items()}
    fusion(features, masks, all_present).fused.square().sum().backward()
    dead = [name for name, p in fusion.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_one_sample_does_not_depend_on_the_rest_of_the_batch(fusion):
    fusion.eval()
    features, masks, present = make_inputs()
    with torch.no_grad():
        full = fusion(features, masks, present).fused
        part = fusion(
            {n: x[:2] for n, x in features.items()},
            {n: None if m is None else m[:2] for n, m in masks.items()},
            {n: p[:2] for n, p in present.items()},
        ).fused
    torch.testing.assert_close(part, full[:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_create_fusion_rejects_unknown_options(name):
    with pytest.raises(SchemaError, match="unknown option"):
        make(name, no_such_option=1)


@pytest.mark.parametrize("name", ["late", "hybrid"])
def test_logit_fusions_need_num_outputs_and_return_unimodal_logits(name):
    assert FUSIONS[name].produces_logits is True
    with pytest.raises(SchemaError, match="num_outputs"):
        create_fusion(name, DIMS)
    fusion = make(name).eval()
    features, masks, present = make_inputs()
    result = fusion(features, masks, present)
    out = result.fused
    assert fusion.output_dim == NUM_OUTPUTS and out.shape == (len(B_LENGTHS), NUM_OUTPUTS)
    assert set(result.unimodal_logits) == set(DIMS)
    for n, logits in result.unimodal_logits.items():
        assert logits.shape == (len(B_LENGTHS), NUM_OUTPUTS)
        assert (logits[~present[n]] == 0).all()


def test_late_mean_is_the_average_over_present_inputs():
    fusion = make("late", combine="mean").eval()
    features, masks, present = make_inputs()
    result = fusion(features, masks, present)
    out = result.fused
    stacked = torch.stack([result.unimodal_logits[n] for n in DIMS], dim=1)
    count = torch.stack([present[n] for n in DIMS], dim=1).sum(dim=1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(out, stacked.sum(dim=1) / count)


def test_late_rejects_unknown_combine():
    with pytest.raises(SchemaError, match="combine"):
        make("late", combine="vote")


def test_tensor_fusion_keeps_the_product_small():
    many = {f"x{i}": 4 for i in range(5)}
    fusion = make("tensor", many)
    assert fusion.mlp[1].in_features <= 32768
    with pytest.raises(SchemaError, match="low_rank_tensor"):
        make("tensor", many, dim=16)
