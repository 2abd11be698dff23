"""mobilenet_v2: torchvision's ImageNet weights load into the native module and classify real photos.

The expected top-5 ImageNet classes were computed once with this implementation and checked
by eye against the photos: two dogs on a road (hound classes 166 Walker hound, 171 Italian
greyhound, 158 toy terrier, 167 English foxhound, 253 basenji), pack horses below a snowy
mountain (970 alp, 979 valley, 350 ibex, 537 dogsled, 345 ox), a motorcycle racer (518 crash
helmet, 670 motor scooter, 665 moped, 444 tandem bicycle, 802 snowmobile).
"""

from __future__ import annotations

import pytest
import torch

from tests.encoders.towers import assert_image_outputs, assert_top5, assert_train_blocks, load_tower

TOP5 = [[166, 171, 158, 167, 253], [970, 979, 350, 537, 345], [518, 670, 665, 444, 802]]


@pytest.fixture(scope="module")
def tower():
    return load_tower("mobilenet_v2")


@pytest.mark.realdata
def test_imagenet_top5_on_real_photos(tower, shared_data):
    assert_top5(tower, shared_data, TOP5)


@pytest.mark.realdata
def test_features_pooled_and_tokens(tower, shared_data):
    assert_image_outputs("mobilenet_v2", tower, shared_data)


def test_frozen_by_default(tower):
    assert tower.frozen and not any(p.requires_grad for p in tower.parameters())
    tower.train()
    assert not any(m.training for m in tower.modules())  # BatchNorm keeps ImageNet's statistics


def test_train_blocks_unfreezes_only_the_last_blocks():
    assert_train_blocks("mobilenet_v2", 2, lambda t: ([t.features[17], t.features[18]], t.features[16]))

