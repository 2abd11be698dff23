"""The retrieval baseline: the consensus caption of the nearest training image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tessera.errors import SchemaError
from tessera.generate.model import Encoded
from tessera.generate.retrieval import NearestCaption, pooled


def test_nearest_training_image_gives_its_most_consensual_caption():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]])
    captions = [
        ["a dog runs on the grass", "a brown dog runs on grass", "an animal outside"],
        ["two men play chess", "people playing a board game in a park", "two men play chess in a park"],
        ["a boat"],
    ]
    baseline = NearestCaption(features, captions)
    assert baseline.neighbours(np.array([[0.1, 3.0], [5.0, 0.5], [-2.0, 0.0]])).tolist() == [1, 0, 2]
    assert baseline.predict(np.array([[0.1, 3.0]])) == ["two men play chess in a park"]
    assert baseline.predict(np.array([[2.0, 0.1]]))[0] in ("a dog runs on the grass", "a brown dog runs on grass")
    with pytest.raises(SchemaError, match="3-d"):
        baseline.predict(np.zeros((1, 3)))
    with pytest.raises(SchemaError, match="non-empty list of captions"):
        NearestCaption(features[:1], [[]])


def test_pooled_features_average_the_valid_tokens():
    tokens = torch.tensor([[[1.0, 1.0], [3.0, 3.0]], [[2.0, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    assert pooled(Encoded(tokens, mask)).tolist() == [[2.0, 2.0], [2.0, 0.0]]
