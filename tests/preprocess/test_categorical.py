import json

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import SchemaError, TesseraError
from tessera.preprocess import ModalityBatch
from tessera.preprocess.base import LoadContext, Preprocessor, collate_samples
from tessera.preprocess.categorical import CategoricalPreprocessor

CTX = LoadContext(row=0)
TRAIN = pd.DataFrame(
    {
        "colour": ["red", "red", "red", "blue", "blue", "green", None],
        "size": [1, 2, 2, 3, 3, 3, np.nan],  # floats, because of the gap
    }
)


def fitted(**kw) -> CategoricalPreprocessor:
    return CategoricalPreprocessor(["colour", "size"], **kw).fit(TRAIN)


def test_ids_most_frequent_first_with_unknown_and_missing():
    pre = fitted()
    assert pre.cardinalities == [5, 5]
    s = pre.load(["red", 3], CTX)
    assert s.data.dtype == np.int64 and s.data.tolist() == [2, 2] and s.mask.tolist() == [True, True]
    assert pre.load(["green", "1"], CTX).data.tolist() == [4, 4]  # 1, 1.0 and "1" are one category
    s = pre.load(["purple", None], CTX)
    assert s.data.tolist() == [1, 0] and s.mask.tolist() == [True, False]
    assert pre.load([None, float("nan")], CTX) is None


def test_max_categories_and_min_count():
    pre = fitted(max_categories=2)
    assert pre.cardinalities == [4, 4]
    assert pre.load(["green", 1], CTX).data.tolist() == [1, 1]
    pre = fitted(min_count=2)
    assert pre.cardinalities == [4, 4]
    assert pre.load(["blue", 2], CTX).data.tolist() == [3, 3]


def test_collate_missing_rows():
    pre = fitted()
    batch = collate_samples(pre, [pre.load(["red", None], CTX), None])
    assert batch.data.tolist() == [[2, 0], [0, 0]]
    assert batch.mask.tolist() == [[True, False], [False, False]]


def test_state_round_trip():
    pre = fitted(max_categories=2)
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, CategoricalPreprocessor) and again.max_categories == 2
    assert again.cardinalities == pre.cardinalities
    for row in (["red", 3], ["blue", 2], ["green", None], ["x", "y"]):
        np.testing.assert_array_equal(again.load(row, CTX).data, pre.load(row, CTX).data)


def test_load_before_fit_and_bad_options():
    with pytest.raises(TesseraError, match="fit the categorical preprocessor on training data first"):
        CategoricalPreprocessor(["a"]).load(["x"], CTX)
    with pytest.raises(SchemaError, match="max_categories"):
        CategoricalPreprocessor(["a"], max_categories=0)


def test_noise_turns_known_ids_into_unknown_and_keeps_missing():
    cats = ModalityBatch(torch.tensor([[2, 0], [3, 4]]), torch.tensor([True, True]), torch.ones(2, 2, dtype=torch.bool))
    assert fitted().corrupt(cats, 1.0, torch.Generator().manual_seed(0)).data.tolist() == [[1, 0], [1, 1]]
    assert fitted().encoder_facts() == {"cardinalities": fitted().cardinalities}
