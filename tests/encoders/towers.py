"""Helpers shared by the pretrained-tower tests: skip when a tower's package is absent, real samples."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

from tessera import zoo
from tessera.encoders import create_encoder
from tessera.encoders.tower import Tower
from tessera.preprocess.audio import AudioPreprocessor
from tessera.preprocess.base import LoadContext, ModalityBatch, collate_samples
from tessera.preprocess.image import transform_image


def pretend_missing(monkeypatch: pytest.MonkeyPatch, dist: str) -> None:
    """Make ``dist`` look uninstalled to the catalogue (``importlib.metadata``), the rest as they are."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == dist:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def load_tower(name: str, **options) -> Tower:
    """The tower, or a skip naming the ``pip install`` that would make the test run."""
    missing = zoo.missing_packages(name)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed ({zoo.tower_info(name).install})")
    return create_encoder(name, **options)


def flickr_batch(data: Path, tower: Tower, names: list[str]) -> torch.Tensor:
    """Flickr8k photos preprocessed the way the tower requires (crop to its size, its statistics)."""
    o = tower.input_options
    return torch.stack(
        [
            torch.from_numpy(
                transform_image(
                    Image.open(data / "flickr8k_1k" / "images" / n), size=o["size"], resize="crop", channels=3, mean=o["mean"], std=o["std"]
                )
            )
            for n in names
        ]
    )


def fsdd_batch(data: Path, files: list[str | None], max_seconds: float = 2.0) -> ModalityBatch:
    """FSDD recordings as the 16 kHz waveform batch the audio towers read; ``None`` is an absent row."""
    pre = AudioPreprocessor(["audio"], sample_rate=16000, representation="waveform", max_seconds=max_seconds)
    rec = data / "fsdd" / "recordings"
    return collate_samples(pre, [None if f is None else pre.load([str(rec / f)], LoadContext()) for f in files])


def assert_rows_independent(tower: Tower, batch: ModalityBatch) -> None:
    """A row's frozen features depend neither on its batch-mates (what a frozen-feature cache
    needs) nor on what its padding holds; absent rows are zeros."""
    together = tower.embed(batch)
    for i in range(len(batch)):
        alone = tower.embed(batch.index(torch.tensor([i])))
        torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
    assert torch.all(together[~batch.present] == 0)
    assert torch.all(together[batch.present].norm(dim=-1) > 0)
    if batch.mask is not None:
        noise = torch.randn(batch.data.shape, generator=torch.Generator().manual_seed(0))
        scrambled = ModalityBatch(torch.where(batch.mask, batch.data, noise), batch.present, batch.mask)
        torch.testing.assert_close(tower.embed(scrambled), together, rtol=1e-5, atol=1e-5)


# -- image towers ---------------------------------------------------------------------------------
# Three Flickr8k photos with one clear subject each: two dogs on a road, pack horses below a
# snowy mountain, a motorcycle racer (looked at when the expected classes were stored).
PHOTOS = ["1001773457_577c3a7d70.jpg", "2066048248_f53f5ef5e2.jpg", "161669933_3e7d8c7e2c.jpg"]


def assert_top5(tower: Tower, data: Path, expected: list[list[int]]) -> None:
    """ImageNet top-5 of the photos: the best class exactly, the five as a set (near-ties at the
    bottom may swap order across CPUs)."""
    top = tower.classify(flickr_batch(data, tower, PHOTOS)).topk(5).indices.tolist()
    for got, want in zip(top, expected):
        assert got[0] == want[0], (got, want)
        assert set(got) == set(want), (got, want)


def assert_image_outputs(name: str, tower: Tower, data: Path) -> None:
    """Pooled ``(B, 1280)``, rows independent, absent rows zero; tokens ``(B, 49, 1280)`` average to it."""
    images = flickr_batch(data, tower, PHOTOS[:2])
    batch = ModalityBatch(torch.cat([images, torch.zeros_like(images[:1])]), torch.tensor([True, True, False]))
    pooled = tower.embed(batch)
    assert pooled.shape == (3, 1280) and tower.output_dim == 1280
    assert_rows_independent(tower, batch)
    tokens, mask = load_tower(name, output="tokens")(batch)
    assert tokens.shape == (3, 49, 1280) and mask.shape == (3, 49)
    assert mask[:2].all() and not mask[2].any()
    torch.testing.assert_close(tokens[:2].mean(dim=1), pooled[:2], rtol=1e-4, atol=1e-5)


def assert_train_blocks(name: str, n: int, pick: Callable[[Tower], tuple[list[torch.nn.Module], torch.nn.Module]]) -> None:
    """``train_blocks=n`` makes exactly the last n blocks learn (and train); the block before them
    (``pick`` returns both) stays frozen, in eval mode. ``trainable`` unfreezes everything."""
    tower = load_tower(name, train_blocks=n)
    last_blocks, before = pick(tower)
    learning = {id(p) for p in tower.parameters() if p.requires_grad}
    assert learning and learning == {id(p) for b in last_blocks for p in b.parameters()}
    tower.train()
    assert all(m.training for b in last_blocks for m in b.modules())
    assert not any(m.training for m in before.modules())
    assert all(p.requires_grad for p in load_tower(name, trainable=True).parameters())
