import numpy as np
import pandas as pd
import pytest

from tessera.evaluate.fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_analysis,
    group_labels,
    modality_combination,
)
from tessera.tasks import Multiclass, Multilabel, Regression

MULTICLASS, REGRESSION = Multiclass(["y"]), Regression(["y"])

Y_TRUE = np.array([0, 0, 1, 1, 0, 0, 1, 1])
Y_PRED = np.array([0, 0, 1, 0, 1, 1, 1, 1])  # group b always says 1
GROUPS = np.array(list("aaaabbbb"), dtype=object)


def test_binary_hand_example():
    frame = pd.DataFrame({"g": GROUPS})
    (result,) = fairness_analysis(MULTICLASS, Y_TRUE, Y_PRED, frame, ["g"], n_classes=2)
    a, b = result["groups"]
    assert (a["group"], a["n"], a["accuracy"]) == ("a", 4, 0.75)
    assert a["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # class 0: 2TP/(2TP+FP+FN) = 4/5; class 1: 2/3
    assert (b["accuracy"], b["macro_f1"]) == (0.5, pytest.approx((0 + 2 / 3) / 2))
    assert result["largest_gap"]["accuracy"] == pytest.approx(0.25)
    # P(pred = 1): a 1/4, b 1 -> 0.75; TPR of class 1: 1/2 vs 1; FPR: 0 vs 1 -> 1
    assert result["demographic_parity_difference"] == pytest.approx(0.75)
    assert result["equalized_odds_difference"] == pytest.approx(1.0)


def test_multiclass_gaps_are_the_worst_class_one_vs_rest():
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 1, 2, 0, 2, 2])
    groups = np.array(list("aaabbb"), dtype=object)
    # class 1 is predicted 1/3 of the time in a, never in b; class 2: 1/3 vs 2/3
    assert demographic_parity_difference(y_pred, groups, 3) == pytest.approx(1 / 3)
    # class 1 TPR: 1 in a, 0 in b
    assert equalized_odds_difference(y_true, y_pred, groups, 3) == pytest.approx(1.0)
    # a group with no rows of a class has no TPR for it: left out, not read as 0
    assert equalized_odds_difference(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), np.array(list("aabb"), dtype=object), 2) == 0.0


def test_groups_from_columns_and_modality_combinations():
    values = pd.Series([1.5, np.nan, 2.5, 3.5] * 10 + list(np.linspace(0, 1, 40)))
    labels = group_labels(values)
    assert labels.nunique() == 5 and (labels == "(missing)").sum() == 10  # quartiles + missing
    assert group_labels(pd.Series(["x", None, "y"])).tolist() == ["x", "(missing)", "y"]
    combos = modality_combination({"image": np.array([True, False, True, False]), "audio": np.array([True, True, False, False])})
    assert combos.tolist() == ["image+audio", "audio", "image", "(none)"]

    present = {"image": np.array([True] * 4 + [False] * 4), "audio": np.ones(8, bool)}
    out = fairness_analysis(MULTICLASS, Y_TRUE, Y_PRED, pd.DataFrame({"g": GROUPS}), [], present, n_classes=2)
    assert [r["group"] for r in out[0]["groups"]] == ["audio", "image+audio"] and out[0]["column"] == "inputs present"


def test_regression_groups():
    (result,) = fairness_analysis(REGRESSION, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 4.0, 6.0]),
                                  pd.DataFrame({"g": list("aabb")}), ["g"])
    assert [g["mae"] for g in result["groups"]] == [0.0, 1.5]
    assert result["largest_gap"]["mae"] == 1.5 and result["demographic_parity_difference"] is None


def test_multilabel_has_no_group_analysis():
    y = np.array([[0, 1], [1, 1]])
    assert fairness_analysis(Multilabel(["a", "b"]), y, y, pd.DataFrame({"g": list("ab")}), ["g"]) == []
