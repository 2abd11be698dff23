import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.preprocess import ModalityBatch
from tessera.preprocess.base import LoadContext, Preprocessor, collate_samples, load_located
from tessera.preprocess.numeric import NumericPreprocessor

CTX = LoadContext(row=0)
TRAIN = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan], "b": ["10", "10", " 10 ", ""], "c": [0, 100, 200, 300]})


def fitted(**kw) -> NumericPreprocessor:
    return NumericPreprocessor(["a", "b", "c"], **kw).fit(TRAIN)


def test_standardises_new_data_with_training_statistics():
    pre = fitted(clip=None)
    s = pre.load([3.0, 10, 150], CTX)
    assert s.data.dtype == np.float32 and s.data.shape == (3,) and s.mask.tolist() == [True, True, True]
    std_a = np.std([1.0, 2.0, 3.0])
    std_c = np.std([0, 100, 200, 300])
    np.testing.assert_allclose(s.data, [(3.0 - 2.0) / std_a, 0.0, 0.0], atol=1e-6)  # constant b: std 1
    np.testing.assert_allclose(pre.load([None, None, 400], CTX).data[2], (400 - 150) / std_c, rtol=1e-6)


def test_missing_values_are_masked_and_all_missing_is_absent():
    pre = fitted()
    s = pre.load([np.nan, "7", None], CTX)
    assert s.mask.tolist() == [False, True, False] and s.data[0] == 0 and s.data[2] == 0
    assert pre.load([math.inf, "", pd.NA], CTX) is None
    batch = collate_samples(pre, [s, None])
    assert batch.data.shape == (2, 3) and batch.present.tolist() == [True, False]


def test_clip():
    s = fitted(clip=2.0).load([1000.0, 10, -1e9], CTX)
    assert s.data[0] == pytest.approx(2.0) and s.data[2] == pytest.approx(-2.0)
    assert fitted(clip=None).load([1000.0, 10, 0], CTX).data[0] > 100


def test_non_numeric_training_value_names_row_column_and_value():
    frame = pd.DataFrame({"a": ["1", "2", "n/a?"]}, index=[5, 6, 7])
    with pytest.raises(DataError, match=r"row 7, column 'a': not a number: 'n/a\?'"):
        NumericPreprocessor(["a"]).fit(frame)


def test_non_numeric_value_at_load_names_the_column():
    pre = fitted()
    with pytest.raises(DataError, match=r"row 4, column 'b': not a number: 'abc'"):
        load_located(pre, [1.0, "abc", 2.0], LoadContext(row=4))
    with pytest.raises(DataError, match=r"column 'c': not a number: 2 bytes"):
        load_located(pre, [1.0, 2.0, b"12"], LoadContext(row=4))


def test_state_round_trip():
    pre = fitted()
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, NumericPreprocessor) and again.columns == ["a", "b", "c"]
    row = [2.5, None, 12]
    np.testing.assert_array_equal(pre.load(row, CTX).data, again.load(row, CTX).data)


def test_load_before_fit_and_bad_options():
    with pytest.raises(TesseraError, match="fit the numeric preprocessor on training data first"):
        NumericPreprocessor(["a"]).load([1.0], CTX)
    with pytest.raises(SchemaError, match="clip"):
        NumericPreprocessor(["a"], clip=0)


def test_noise_spares_absent_rows_and_missing_cells():
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 1] = False
    batch = ModalityBatch(torch.zeros(4, 3), torch.tensor([True, True, False, True]), mask)
    out = fitted().corrupt(batch, 1.0, torch.Generator().manual_seed(0))
    assert (out.data[2] == 0).all() and out.data[0, 1] == 0 and out.data[[1, 3]].std() > 0.5


def test_states_its_facts_and_training_statistics():
    pre = fitted()
    assert pre.encoder_facts() == {"n_features": 3, "n_numeric": 3}
    stats = pre.reference_statistics()
    assert list(stats) == ["a", "b", "c"]
    assert stats["a"] == pytest.approx((2.0, np.std([1.0, 2.0, 3.0])))
    assert stats["b"] == (10.0, 1.0)  # a constant column keeps unit scale
