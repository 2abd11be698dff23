"""Creating encoders by name, config mistakes reported as SchemaError, and masked_mean."""

from __future__ import annotations

import pytest
import torch

from tessera.encoders import ENCODERS, ImageCNN, create_encoder, masked_mean
from tessera.errors import SchemaError
from tessera.preprocess import PREPROCESSORS


def test_create_by_name() -> None:
    enc = create_encoder("image_cnn", in_channels=1, dim=8, width=4)
    assert isinstance(enc, ImageCNN) and enc.output_dim == 8


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(SchemaError, match="unknown encoder 'resnet9000'.*image_cnn"):
        create_encoder("resnet9000")


def test_unknown_option_lists_known_ones() -> None:
    with pytest.raises(SchemaError, match=r"\['depht'\].*known options.*'depth'"):
        create_encoder("text_transformer", vocab_size=10, max_length=4, depht=3)


def test_missing_required_option() -> None:
    with pytest.raises(SchemaError, match=r"needs option\(s\) \['max_length'\]"):
        create_encoder("text_transformer", vocab_size=10)


def test_every_modality_names_a_registered_default_encoder() -> None:
    assert set(PREPROCESSORS) >= {"image", "audio", "text", "video", "numeric", "categorical", "timeseries"}
    assert {PREPROCESSORS[m].default_encoder for m in PREPROCESSORS} <= set(ENCODERS)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ft_transformer", {}),
        ("ft_transformer", {"n_numeric": 2, "cardinalities": [3]}),
        ("image_vit", {"in_channels": 3, "image_size": 30, "patch_size": 4}),
        ("text_transformer", {"vocab_size": 10, "max_length": 4, "dim": 30, "heads": 4}),
        ("video_frames", {"in_channels": 3, "temporal": "max"}),
        ("timeseries_cnn", {"channels": 2, "kernel_size": 4}),
    ],
)
def test_bad_configs_are_schema_errors(name: str, kwargs: dict) -> None:
    with pytest.raises(SchemaError):
        create_encoder(name, **kwargs)


def test_masked_mean() -> None:
    x = torch.tensor([[[1.0], [3.0], [float("nan")]], [[5.0], [float("inf")], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0], [0.0]]))
    torch.testing.assert_close(masked_mean(x[:1, :2], None), torch.tensor([[2.0]]))
