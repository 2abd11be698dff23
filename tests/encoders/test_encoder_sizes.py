"""Input sizes at the edges of what the preprocessors produce."""

from __future__ import annotations

import pytest
import torch

from tessera.encoders import AudioTransformer, ImageCNN, ImageViT
from tessera.preprocess.base import ModalityBatch


def images(b: int, c: int, size: int) -> ModalityBatch:
    return ModalityBatch(torch.randn(b, c, size, size), torch.ones(b, dtype=torch.bool))


@pytest.mark.parametrize("size", [28, 64, 224])
def test_image_cnn_sizes(size: int) -> None:
    enc = ImageCNN(in_channels=1, dim=8, width=4).eval()
    with torch.no_grad():
        out, _ = enc(images(2, 1, size))
    assert out.shape == (2, 8)


def test_image_cnn_trains_on_a_single_small_image() -> None:
    """BatchNorm refuses one value per channel; the smallest map must stay above 1x1."""
    ImageCNN(in_channels=1, dim=8, width=4).train().pooled(images(1, 1, 28)).sum().backward()


@pytest.mark.parametrize(("size", "tokens"), [(28, 1 + 49), (224, 1 + 196)])
def test_image_vit_default_patch_size(size: int, tokens: int) -> None:
    enc = ImageViT(in_channels=3, image_size=size, dim=8, depth=1, heads=2).eval()
    with torch.no_grad():
        out, mask = enc(images(1, 3, size))
    assert out.shape == (1, tokens, 8) and mask.all()


def test_audio_transformer_frames_not_a_multiple_of_the_patch() -> None:
    enc = AudioTransformer(n_mels=8, frames=21, patch_frames=8, dim=8, depth=1, heads=2).eval()
    mask = torch.arange(21) < torch.tensor([[21], [9]])
    batch = ModalityBatch(torch.randn(2, 8, 21), torch.ones(2, dtype=torch.bool), mask)
    with torch.no_grad():
        out, tokens = enc(batch)
    assert out.shape == (2, 3, 8)
    assert tokens.tolist() == [[True, True, True], [True, True, False]]
    with pytest.raises(ValueError, match="at most 24"):
        enc(ModalityBatch(torch.randn(1, 8, 25), torch.ones(1, dtype=torch.bool)))
