"""Structured metadata filters: the SQL they become, what they refuse, and that a quote in a value stays data."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tessera.index import VectorIndex
from tessera.index.filters import FilterError, filterable, where

COLUMNS = ["label", "price", "in stock", "path", "thumbnail"]


def test_values_lists_and_comparisons_become_one_where_clause() -> None:
    assert where({}, COLUMNS) is None
    assert where({"label": "cat"}, COLUMNS) == "label = 'cat'"
    assert where({"label": ["cat", "dog"], "price": {"gte": 1, "lt": 2.5}}, COLUMNS) == "label IN ('cat', 'dog') AND price >= 1 AND price < 2.5"
    assert where({"in stock": True}, COLUMNS) == "`in stock` = TRUE"
    assert where({"label": "x' OR 1=1 --"}, COLUMNS) == "label = 'x'' OR 1=1 --'"


@pytest.mark.parametrize(
    "filters, words",
    [
        ({"path": "a.png"}, "cannot filter on 'path'"),
        ({"nope; DROP": 1}, "filterable columns: ['label', 'price', 'in stock']"),
        ({"label": []}, "list of values is empty"),
        ({"price": {"between": [1, 2]}}, "use the operators"),
        ({"price": float("nan")}, "must be finite"),
        ({"label": ["x" * 1001]}, "too long"),
        ({"label": {"nested": "x"}}, "use the operators"),
        ({"label": [None]}, "strings, numbers or booleans"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(filters, words) -> None:
    with pytest.raises(FilterError, match=re.escape(words)):
        where(filters, COLUMNS)


def test_an_index_searches_with_a_structured_filter(tmp_path) -> None:
    index = VectorIndex.create(tmp_path / "idx", 4, metadata_schema={"label": pa.string(), "path": pa.string()})
    vectors = np.eye(4, dtype=np.float32) + 0.1
    index.add(["a", "b", "c", "d"], vectors, pd.DataFrame({"label": ["cat", "dog", "cat", "o'brien"], "path": ["1", "2", "3", "4"]}))
    assert filterable(index.metadata_columns) == ["label"]
    assert sorted(index.search(vectors[0], k=4, filter={"label": "cat"})["id"]) == ["a", "c"]
    assert index.search(vectors[0], k=4, filter={"label": "o'brien"})["id"].tolist() == ["d"]
    assert index.search(vectors[0], k=4, filter={"label": "cat' OR '1'='1"}).empty
    with pytest.raises(FilterError, match="cannot filter on 'path'"):
        index.search(vectors[0], k=4, filter={"path": "1"})
