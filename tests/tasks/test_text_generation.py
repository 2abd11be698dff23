"""The text_generation task: references in, generated texts scored by CIDEr-D and BLEU-4 with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera.errors import DataError, TesseraError
from tessera.evaluate.metrics import task_metrics
from tessera.tasks import TextGeneration, create_task

REFS = [
    ("a dog runs on the grass", "a brown dog runs"),
    ("two children play in the snow", "kids playing in snow"),
    ("a man rides a bike on the street", "a cyclist on a road"),
    ("a woman swims in the pool", "a swimmer in blue water"),
]


def test_references_come_from_several_columns_or_list_cells():
    task = create_task("captioning", ["a", "b"])
    assert isinstance(task, TextGeneration)
    frame = pd.DataFrame({"a": ["x y", ["p q", " "], None], "b": ["z", "r", ""]})
    refs, known = task.encode(frame)
    assert refs.tolist() == [("x y", "z"), ("p q", "r"), ()] and known.tolist() == [True, True, False]
    with pytest.raises(DataError, match="no row has a reference"):
        create_task("text_generation", ["a"]).fit(pd.DataFrame({"a": [None, ""]}))


def test_training_through_the_fusion_loop_says_where_text_models_are_trained():
    task = create_task("text_generation", ["caption"])
    with pytest.raises(TesseraError, match="tessera generate fit"):
        _ = task.num_outputs
    with pytest.raises(TesseraError, match="tessera generate fit"):
        task.loss(None, None)


def test_metrics_with_bootstrap_intervals_and_a_paired_gain():
    task = create_task("text_generation", ["caption"])
    y = task.true_values(REFS)
    good = task.scores([r[0] for r in REFS])
    bad = task.scores(["a dog runs on the grass"] * len(REFS))
    summary = task_metrics(task, y, good, n_boot=200)
    for name in ("cider", "bleu4"):
        m = summary[name]
        assert m["low"] <= m["value"] <= m["high"]
    assert summary["cider"]["value"] == pytest.approx(task.summary_metrics(good, REFS)["cider"])
    assert task.main_score(y, good) > task.main_score(y, bad)
    gain = task.paired_gain(task.per_row_outcome(y, good), task.per_row_outcome(y, bad), n_boot=200)
    assert gain["gain"] > 0 and gain["measure"] == "CIDEr gain"
    worst = int(np.argmax(task.per_row_loss(y, bad)))
    assert task.describe_row(y[worst], bad[worst])["predicted"] == "a dog runs on the grass"
    assert task.served(["hi"]) == [{"text": "hi"}]
    assert task.predictions(["a", "b"], np.array([7, 9])).to_dict() == {7: "a", 9: "b"}
