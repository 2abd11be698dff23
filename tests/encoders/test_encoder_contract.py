"""Every registered encoder against the shared contract, on small batches shaped like the preprocessors' output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

from tessera import zoo
from tessera.encoders import ENCODERS, create_encoder
from tessera.preprocess.base import ModalityBatch

B = 6
CARDS = [6, 9, 5]


def lengths_mask(b: int, t: int, g: torch.Generator) -> torch.Tensor:
    """Prefix masks of random length >= 1, with one gap in the first row (series with NaN rows have gaps)."""
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = torch.arange(t) < lengths[:, None]
    mask[0, t // 2] = False
    return mask


def image_batch(b: int, g: torch.Generator) -> ModalityBatch:
    return ModalityBatch(torch.randn(b, 3, 28, 28, generator=g), torch.ones(b, dtype=torch.bool))


def audio_batch(b: int, g: torch.Generator) -> ModalityBatch:
    return ModalityBatch(torch.randn(b, 16, 30, generator=g), torch.ones(b, dtype=torch.bool), lengths_mask(b, 30, g))


def video_batch(b: int, g: torch.Generator) -> ModalityBatch:
    return ModalityBatch(
        torch.randn(b, 4, 3, 16, 16, generator=g), torch.ones(b, dtype=torch.bool), lengths_mask(b, 4, g)
    )


def text_batch(b: int, g: torch.Generator) -> ModalityBatch:
    mask = lengths_mask(b, 12, g)
    ids = torch.randint(2, 50, (b, 12), generator=g).masked_fill(~mask, 0)
    return ModalityBatch(ids, torch.ones(b, dtype=torch.bool), mask)


def numeric_batch(b: int, g: torch.Generator) -> ModalityBatch:
    mask = torch.rand(b, 5, generator=g) > 0.2
    return ModalityBatch(torch.randn(b, 5, generator=g) * mask, torch.ones(b, dtype=torch.bool), mask)


def categorical_batch(b: int, g: torch.Generator) -> ModalityBatch:
    ids = torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], dim=1)
    return ModalityBatch(ids, torch.ones(b, dtype=torch.bool), ids != 0)


def timeseries_batch(b: int, g: torch.Generator) -> ModalityBatch:
    return ModalityBatch(torch.randn(b, 20, 3, generator=g), torch.ones(b, dtype=torch.bool), lengths_mask(b, 20, g))


@dataclass
class Spec:
    name: str
    kwargs: dict[str, Any]
    make: Callable[[int, torch.Generator], ModalityBatch]
    tokens: bool  # forward returns (B, T, D) + mask
    mask_axis: int = 1  # data axis the mask runs along
    int_high: int | None = None  # scrambled ids stay below this
    cut: int | None = None  # for sequences: a shorter length to compare padding amounts with
    id: str = field(default="")


SPECS = [
    Spec("image_cnn", dict(in_channels=3, dim=16, width=8), image_batch, False),
    Spec("image_vit", dict(in_channels=3, image_size=28, patch_size=7, dim=16, heads=2), image_batch, True),
    Spec("audio_cnn", dict(n_mels=16, dim=16, width=8), audio_batch, False, mask_axis=2, cut=16),
    Spec("audio_transformer", dict(n_mels=16, frames=30, dim=16, heads=2), audio_batch, True, mask_axis=2, cut=16),
    Spec("text_transformer", dict(vocab_size=50, max_length=12, dim=16, heads=2), text_batch, True, int_high=50, cut=6),
    Spec("video_frames", dict(in_channels=3, dim=16, width=8, heads=2), video_batch, True, cut=2),
    Spec(
        "video_frames", dict(in_channels=3, dim=16, width=8, temporal="mean"), video_batch, False, cut=2, id="video_mean"
    ),
    Spec("numeric_mlp", dict(n_features=5, dim=16, hidden=32), numeric_batch, False),
    Spec("categorical_embedding", dict(cardinalities=CARDS, dim=16, hidden=32), categorical_batch, False, int_high=5),
    Spec("ft_transformer", dict(n_numeric=5, dim=16, heads=2), numeric_batch, True, id="ft_numeric"),
    Spec(
        "ft_transformer", dict(cardinalities=CARDS, dim=16, heads=2), categorical_batch, True, int_high=5, id="ft_cat"
    ),
    Spec("timeseries_gru", dict(channels=3, dim=16), timeseries_batch, False, cut=10),
    Spec("timeseries_cnn", dict(channels=3, dim=16, width=16), timeseries_batch, False, cut=10),
]
MASKED = [s for s in SPECS if s.make is not image_batch]
SEQUENCES = [s for s in SPECS if s.cut]


def ids(specs: list[Spec]) -> list[str]:
    return [s.id or s.name for s in specs]


def build(spec: Spec) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_encoder(spec.name, **spec.kwargs)


def batch_of(spec: Spec, b: int = B, seed: int = 0) -> ModalityBatch:
    return spec.make(b, torch.Generator().manual_seed(seed))


def with_absent(batch: ModalityBatch, rows: list[int]) -> ModalityBatch:
    """Absent samples as ``collate_samples`` produces them: zero data, present False, mask all False."""
    data, present = batch.data.clone(), batch.present.clone()
    mask = None if batch.mask is None else batch.mask.clone()
    data[rows], present[rows] = 0, False
    if mask is not None:
        mask[rows] = False
    return ModalityBatch(data, present, mask)


def scramble(spec: Spec, batch: ModalityBatch, rows: list[int] | None = None) -> ModalityBatch:
    """Replace the data wherever the mask is False, and everywhere in ``rows``."""
    data = batch.data
    hidden = torch.zeros(data.shape, dtype=torch.bool)
    if batch.mask is not None:
        shape = [len(data)] + [1] * (data.dim() - 1)
        shape[spec.mask_axis] = batch.mask.shape[1]
        hidden |= ~batch.mask.view(shape)
    if rows:
        hidden[rows] = True
    g = torch.Generator().manual_seed(123)
    if data.dtype.is_floating_point:
        noise = torch.randn(data.shape, generator=g) * 5 + 3
    else:
        noise = torch.randint(1, spec.int_high, data.shape, generator=g)
    return ModalityBatch(torch.where(hidden, noise, data), batch.present, batch.mask)


PRETRAINED = {"hf_text", "sentence_transformer", "hf_vision", "hf_audio"}  # tested in test_encoder_pretrained.py
PRETRAINED |= {n for n, t in zoo.CATALOG.items() if t.kind == "encoder"}  # the zoo's towers: test_<tower>.py


def test_every_registered_encoder_has_a_spec() -> None:
    assert {s.name for s in SPECS} == set(ENCODERS) - PRETRAINED


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_output_shapes(spec: Spec) -> None:
    enc = build(spec).eval()
    batch = batch_of(spec)
    with torch.no_grad():
        out, mask = enc(batch)
        pooled = enc.pooled(batch)
    d = spec.kwargs["dim"]
    assert enc.output_dim == d
    assert pooled.shape == (B, d)
    if spec.tokens:
        assert out.dim() == 3 and out.shape[0] == B and out.shape[2] == d
        assert mask is not None and mask.dtype == torch.bool and mask.shape == out.shape[:2]
        assert mask.any(dim=1).all()
    else:
        assert mask is None
        assert out.shape == (B, d)
        torch.testing.assert_close(pooled, out)


@pytest.mark.parametrize("spec", MASKED, ids=ids(MASKED))
def test_masked_positions_do_not_matter(spec: Spec) -> None:
    enc = build(spec).eval()
    batch = batch_of(spec)
    with torch.no_grad():
        out, _ = enc(batch)
        out2, _ = enc(scramble(spec, batch))
    assert torch.allclose(out, out2, atol=1e-5)


@pytest.mark.parametrize("spec", SEQUENCES, ids=ids(SEQUENCES))
def test_amount_of_trailing_padding_does_not_matter(spec: Spec) -> None:
    """The same content padded to two lengths pools to the same vector (eval mode)."""
    enc = build(spec).eval()
    batch = batch_of(spec)
    long_mask = batch.mask.clone()
    long_mask[:, spec.cut :] = False
    short = ModalityBatch(batch.data.narrow(spec.mask_axis, 0, spec.cut), batch.present, long_mask[:, : spec.cut])
    with torch.no_grad():
        long_out = enc.pooled(ModalityBatch(batch.data, batch.present, long_mask))
        short_out = enc.pooled(short)
    assert torch.allclose(long_out, short_out, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_absent_samples_give_zeros_and_leave_others_finite(spec: Spec) -> None:
    enc = build(spec).eval()
    batch = with_absent(batch_of(spec), [0, 3])
    with torch.no_grad():
        out, mask = enc(batch)
        pooled = enc.pooled(batch)
        out2, _ = enc(scramble(spec, batch, rows=[0, 3]))
    assert torch.isfinite(out).all() and torch.isfinite(pooled).all()
    assert torch.allclose(out, out2, atol=1e-5)
    assert (pooled[[0, 3]] == 0).all()
    assert (pooled[[1, 2, 4, 5]].abs().sum(dim=1) > 0).all()
    if mask is not None:
        assert not mask[[0, 3]].any()


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_gradients_reach_every_parameter(spec: Spec) -> None:
    enc = build(spec).train()
    enc.pooled(with_absent(batch_of(spec), [1])).pow(2).mean().backward()
    first = next(enc.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_can_overfit_a_tiny_batch(spec: Spec) -> None:
    """Cross-entropy through a linear head falls by 80% within 50 steps (most need under 15)."""
    enc = build(spec).train()
    head = torch.nn.Linear(enc.output_dim, 2)
    batch = batch_of(spec, b=8, seed=1)
    y = torch.tensor([0, 1] * 4)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-2)
    losses: list[float] = []
    for _ in range(50):
        loss = F.cross_entropy(head(enc.pooled(batch)), y)
        losses.append(loss.item())
        if loss.item() < 0.2 * losses[0]:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.2 * losses[0], losses[::5]
