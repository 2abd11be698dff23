import pandas as pd
import pytest
import torch

from tessera.errors import SchemaError
from tessera.evaluate.contribution import contribution_analysis, shapley_values, without_inputs
from tessera.pipeline import CachedSplit, cache_split
from tessera.predictor import Predictor
from tessera.prepare import prepare
from tessera.preprocess import ModalityBatch
from tessera.table import read_table


def test_shapley_exact_values_on_hand_made_games():
    # additive parts plus an a-c interaction that a and c share equally
    def value(s):
        return 0.1 * ("a" in s) + 0.3 * ("b" in s) + 0.2 * ({"a", "c"} <= s) + 0.05

    phi = shapley_values(value, ["a", "b", "c"])
    assert phi == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.1})
    assert sum(phi.values()) == pytest.approx(value({"a", "b", "c"}) - value(frozenset()))

    # glove game: one left glove, two right gloves; a pair is worth 1
    def gloves(s):
        return float("left" in s and bool({"right1", "right2"} & s))

    phi = shapley_values(gloves, ["left", "right1", "right2"])
    assert phi == pytest.approx({"left": 2 / 3, "right1": 1 / 6, "right2": 1 / 6})


def test_shapley_refuses_more_than_five_inputs():
    with pytest.raises(SchemaError, match="sampling"):
        shapley_values(lambda s: len(s), list("abcdef"))


def test_without_inputs_looks_like_missing_and_leaves_the_original():
    split = CachedSplit(
        {
            "a": ModalityBatch(torch.ones(3, 4), torch.tensor([True, True, False]), torch.ones(3, 4, dtype=torch.bool)),
            "b": ModalityBatch(torch.ones(3, 2), torch.ones(3, dtype=torch.bool)),
        },
        torch.tensor([0, 1, 0]),
        torch.arange(3),
    )
    out = without_inputs(split, ["a"])
    assert not out.inputs["a"].present.any() and not out.inputs["a"].mask.any() and (out.inputs["a"].data == 0).all()
    assert out.inputs["b"] is split.inputs["b"]
    assert split.inputs["a"].present.tolist() == [True, True, False] and (split.inputs["a"].data == 1).all()


def test_a_model_that_only_needs_the_image_is_flagged_as_ignoring_audio(tiny_table, tiny_schema):
    """Label = the image bit; the audio bit is independent of it, so audio is pure noise for this task."""
    frame = pd.read_csv(tiny_table)
    frame["label"] = frame["label"] // 2
    path = tiny_table.parent / "image_label.csv"
    frame.to_csv(path, index=False)
    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "audio")}}
    predictor = Predictor(model={"dim": 16}, train={"epochs": 8, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 0})
    data = prepare(path, schema, None, predictor.train_config)
    pipeline, sources = data.pipeline, data.splits
    predictor.fit_prepared(pipeline, sources)
    split = cache_split(pipeline, pipeline.dataset(read_table(path)))

    result = contribution_analysis(predictor.model, split, pipeline.target, unimodal={"audio": 0.5, "image": 1.0})
    by_input = {r["input"]: r for r in result["inputs"]}
    assert result["full"] > 0.95
    assert by_input["audio"]["ignores_modality"] and not by_input["image"]["ignores_modality"]
    assert by_input["image"]["removal_drop"] > 0.3 and by_input["image"]["shapley"] > 0.3
    assert sum(r["shapley"] for r in result["inputs"]) == pytest.approx(result["full"] - result["none"])
    assert len(result["subsets"]) == 4  # every subset of two inputs evaluated once
    assert by_input["audio"]["warning"] is None  # audio alone is no better than no input: nothing is wasted
    wasted = contribution_analysis(predictor.model, split, pipeline.target, unimodal={"audio": 0.9})
    assert "leaves that information unused" in {r["input"]: r for r in wasted["inputs"]}["audio"]["warning"]
