"""Target leakage: held-out rules, not in-sample purity, and label-like names."""

import numpy as np
import pandas as pd

from tessera.leakage import find_leaks, name_tokens, named_like_a_label


def test_names():
    assert name_tokens("subCategory_id") == ["sub", "category", "id"]
    assert named_like_a_label("dx_name", ["dx"]) == "named after the target 'dx'"
    assert named_like_a_label("label", ["price"]) == "named like a label ('label')"
    assert named_like_a_label("dxa", ["dx"]) is None and named_like_a_label("dx", ["dx"]) is None


def test_unique_values_do_not_count_as_a_leak_but_a_renamed_label_and_a_copied_value_do():
    rng = np.random.default_rng(0)
    n = 500
    y = rng.integers(0, 3, n)
    frame = pd.DataFrame({
        "title": [f"item {i}" for i in range(n)],  # each value predicts its own row perfectly, in sample only
        "colour": np.array(["red", "green", "blue"])[y],
        "noise": rng.normal(size=n),
        "y": y,
    })
    leaks = {leak.column for leak in find_leaks(frame, ["y"], "multiclass", {"title": "categorical", "colour": "categorical", "noise": "numeric"})}
    assert leaks == {"colour"}
    price = rng.lognormal(3, 1, n)
    values = pd.DataFrame({"price": price, "amount_eur": price * 0.9, "area": rng.normal(size=n)})
    leaks = find_leaks(values, ["price"], "regression", {"amount_eur": "numeric", "area": "numeric"})
    assert [leak.column for leak in leaks] == ["amount_eur"] and "rank correlation 1.000" in leaks[0].reason
