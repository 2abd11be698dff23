"""Paraphrase captions: training, validation and held-out sets never share a caption."""

from __future__ import annotations

import pytest

from tessera.errors import SchemaError
from tessera.generate.captions import CAPTIONS, check_disjoint


@pytest.mark.parametrize("dataset", sorted(CAPTIONS))
def test_the_three_caption_sets_are_disjoint_and_cover_every_class(dataset):
    table = CAPTIONS[dataset]
    sets = {which: {c for _, c in table.pairs(which)} for which in ("train", "validation", "heldout")}
    assert not sets["train"] & sets["heldout"] and not sets["train"] & sets["validation"]
    assert not sets["validation"] & sets["heldout"]
    for which in sets:
        assert sorted({label for label, _ in table.pairs(which)}) == list(range(len(table.classes)))
    assert min(len(t) for t in table.train) >= 10  # several training phrasings per class, not one frame


def test_an_overlap_is_caught():
    with pytest.raises(AssertionError, match=r"both the train and the heldout sets: \['a cat'\]"):
        check_disjoint(train=(("a cat", "a dog"),), heldout=(("a cat",),))


def test_an_unknown_caption_set_is_a_clear_error():
    with pytest.raises(SchemaError, match="caption set must be one of"):
        CAPTIONS["mnist"].pairs("test")
