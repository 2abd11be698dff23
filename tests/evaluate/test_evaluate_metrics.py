import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from tessera.evaluate import metrics as m
from tessera.tasks import create_task

METRICS = {name: create_task(name, ["a", "b"]).metrics() for name in ("multiclass", "multilabel", "regression")}


def fake_classifier(n: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities that are right more often than chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


def test_classification_metrics_equal_sklearn():
    y, p = fake_classifier(300)
    pred = p.argmax(1)
    assert m.accuracy(y, p) == skm.accuracy_score(y, pred)
    assert m.balanced_accuracy(y, p) == skm.balanced_accuracy_score(y, pred)
    assert m.macro_f1(y, p) == skm.f1_score(y, pred, average="macro")
    assert m.auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m.log_loss(y, p) == pytest.approx(skm.log_loss(y, p))
    # the weighted forms with every row counted once give the same values
    once = np.ones((1, len(y)))
    for fn in METRICS["multiclass"].values():
        assert fn.weighted(y, p, once)[0] == pytest.approx(fn(y, p)), fn.__name__
    yb, pb = fake_classifier(200, k=2, seed=1)
    assert m.auroc(yb, pb) == pytest.approx(skm.roc_auc_score(yb, pb[:, 1]))


def test_auroc_with_a_class_missing_averages_the_present_ones():
    y, p = fake_classifier(120, k=4)
    keep = y != 3
    y, p = y[keep], p[keep]
    expected = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in range(3)])
    assert m.auroc(y, p) == pytest.approx(expected)


def test_ece_and_reliability_match_an_explicit_binning():
    y, p = fake_classifier(500, seed=2)
    conf, correct = p.max(1), (p.argmax(1) == y).astype(int)
    edges = np.linspace(0, 1, m.ECE_BINS + 1)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            expected += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    assert m.ece(y, p) == pytest.approx(expected)
    bins = m.reliability(y, p)
    frac, mean_conf = calibration_curve(correct, conf, n_bins=m.ECE_BINS)
    np.testing.assert_allclose(bins["accuracy"], frac)
    np.testing.assert_allclose(bins["confidence"], mean_conf)
    assert sum(bins["count"]) == len(y)
    # a model right on every row: no pos_label trouble, ECE = 1 - mean confidence
    assert m.ece(p.argmax(1), p) == pytest.approx(1 - p.max(1).mean())


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    pred = y + rng.normal(scale=0.5, size=200)
    assert m.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m.rmse(y, pred) == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m.r2(y, pred) == pytest.approx(skm.r2_score(y, pred))


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "log_loss"])
def test_bootstrap_interval_contains_the_value_and_narrows_with_more_rows(name):
    fn = METRICS["multiclass"][name]
    widths = []
    for n in (80, 2000):
        y, p = fake_classifier(n, seed=n)
        value, low, high = m.bootstrap_ci(fn, y, p, n_boot=200, seed=0)
        assert value == pytest.approx(fn(y, p))
        assert low <= value <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 5x narrower expected


def test_regression_bootstrap_intervals():
    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.5, size=300)
    for name in ("mae", "rmse", "r2"):
        value, low, high = m.bootstrap_ci(METRICS["regression"][name], y, pred, n_boot=200)
        assert low <= value <= high


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_weighted_bootstrap_equals_sklearn_on_each_resample(task):
    """The all-at-once bootstrap gives the same interval as calling sklearn per resample."""
    y, p = fake_classifier(60, k=4, seed=6)
    p[:10] = p[10:20]  # tied scores, for the AUROC
    y[:3] = 3  # a rare class, missing from some resamples
    y[3:] = np.minimum(y[3:], 2)
    if task == "regression":
        y, p = y + p[:, 0], y + p[:, 1]
    for name, fn in METRICS[task].items():
        fast = m.bootstrap_ci(fn, y, p, n_boot=150, seed=5)
        slow = m.bootstrap_ci(lambda a, b: fn(a, b), y, p, n_boot=150, seed=5)  # no .weighted: the loop
        assert fast == pytest.approx(slow), name


def test_task_metrics_and_tables():
    y, p = fake_classifier(60)
    out = m.task_metrics(create_task("multiclass", ["y"]), y, p, n_boot=50)
    assert set(out) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "log_loss", "ece", "n"}
    assert out["n"] == 60 and all(out[k]["low"] <= out[k]["high"] for k in out if k != "n")
    assert np.asarray(m.confusion(y, p)).sum() == 60
    rows = m.per_class_metrics(y, p, ["a", "b", "c"])
    assert [r["class"] for r in rows] == ["a", "b", "c"] and sum(r["support"] for r in rows) == 60
    ml = m.task_metrics(create_task("multilabel", ["a", "b", "c"]), (p > 0.3).astype(int), p, n_boot=20)
    assert ml["subset_accuracy"]["value"] == skm.accuracy_score((p > 0.3).astype(int), (p > 0.5).astype(int))
