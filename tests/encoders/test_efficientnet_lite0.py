"""efficientnet_lite0: the converted TensorFlow Lite0 weights load into the native module and classify real photos.

Expected top-5 ImageNet classes, computed once with this implementation and checked against
the photos: two dogs (166 Walker hound, 162 beagle, 161 basset, 167 English foxhound, 158 toy
terrier), pack horses below a snowy mountain (970 alp, 537 dogsled, 350 ibex, 354 Arabian
camel, 979 valley), a motorcycle racer (518 crash helmet, 670 motor scooter, 665 moped, 573
go-kart, 817 sports car). With ImageNet's per-channel statistics instead of the Lite
checkpoints' (x - 127) / 128 the dog photo's top class falls from 0.66 to 0.28 probability,
which is how the normalisation was confirmed.
"""

from __future__ import annotations

import pytest

from tests.encoders.towers import assert_image_outputs, assert_top5, assert_train_blocks, load_tower

TOP5 = [[166, 162, 161, 167, 158], [970, 537, 350, 354, 979], [518, 670, 665, 573, 817]]


@pytest.fixture(scope="module")
def tower():
    return load_tower("efficientnet_lite0")


@pytest.mark.realdata
def test_imagenet_top5_on_real_photos(tower, shared_data):
    assert_top5(tower, shared_data, TOP5)


@pytest.mark.realdata
def test_features_pooled_and_tokens(tower, shared_data):
    assert_image_outputs("efficientnet_lite0", tower, shared_data)


def test_frozen_by_default(tower):
    assert tower.frozen and not any(p.requires_grad for p in tower.parameters())
    tower.train()
    assert not any(m.training for m in tower.modules())


def test_train_blocks_unfreezes_only_the_last_blocks():
    # 18 blocks: the stem, 16 MBConv blocks, the head; 3 = the last two MBConv and the head.
    assert_train_blocks("efficientnet_lite0", 3, lambda t: (t.blocks()[-3:], t._blocks[13]))

