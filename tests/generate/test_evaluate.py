"""A generator's held-out evaluation: grouped references, scores with intervals, the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera.errors import SchemaError
from tessera.evaluate.report import write_report
from tessera.generate import Generator
from tessera.generate.evaluate import evaluate_generator, group_references, spread_examples

from .conftest import CAPTIONS


def test_rows_sharing_an_input_become_one_example_with_several_references():
    frame = pd.DataFrame(
        {
            "photo": ["a.png", "a.png", "b.png", "a.png", "c.png"],
            "caption": ["one", "two", "three", "", None],
            "question": [None, None, None, None, None],
        }
    )
    held = group_references(frame, "photo", ["caption"])
    assert held.inputs == ["a.png", "b.png"] and held.references == [["one", "two"], ["three"]]
    assert held.rows == [0, 2]
    asked = frame.assign(question=["what?", "how?", "what?", "what?", "what?"])
    held = group_references(asked, "photo", ["caption"], "question")  # VQA: one example per image and question
    assert held.references == [["one"], ["two"], ["three"]] and held.prompts == ["what?", "how?", "what?"]
    with pytest.raises(SchemaError, match="'label' is not in the table"):
        group_references(frame, "photo", ["label"])


def test_examples_spread_from_best_to_worst():
    assert spread_examples(np.array([0.1, 0.9, 0.5, 0.3, 0.7]), 3) == [1, 2, 0]
    assert spread_examples(np.array([0.2, 0.1]), 5) == [0, 1]


def test_evaluating_a_saved_captioner_writes_the_report(saved_captioner, tmp_path):
    model, table = saved_captioner
    gen = Generator.load(model)
    results, generated = evaluate_generator(gen, table, n_boot=100, n_examples=3)
    assert results["meta"]["n"] == 12 and len(generated) == 12
    assert results["summary"]["cider"]["value"] > 1.0  # it learnt the four captions
    assert set(generated) <= set(CAPTIONS.values())
    ex = results["examples"][0]
    assert ex["predicted"] in CAPTIONS.values() and ex["inputs"][0]["src"].startswith("data:image/png")
    _, html_path = write_report(results, tmp_path / "report.json")
    html = html_path.read_text()
    assert "text_generation" in html and ex["predicted"] in html and "cider" in html
    with pytest.raises(SchemaError, match="split 'test' needs the config's split column"):
        evaluate_generator(gen, table, split="test")
