"""A new modality is a preprocessor and an encoder, and nothing else.

The toy modality below (a cell is a word over a small alphabet, read as letter counts) is
defined in this file only and registered at test time; no Tessera module knows it. It is
then declared in a schema, fitted, saved, loaded, used to predict, evaluated with every
analysis (contribution, robustness, worst examples), inspected, and monitored for drift.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from rich.console import Console
from torch import nn

from tessera.encoders import ENCODERS, Encoder, register_encoder
from tessera.encoders.base import zero_absent
from tessera.evaluate.run import evaluate_predictor
from tessera.inspection import inspect_table
from tessera.media import is_missing
from tessera.predictor import Predictor
from tessera.preprocess import PREPROCESSORS, LoadContext, Noise, Preprocessor, Sample, register
from tessera.serve.monitoring import DriftMonitor


class WordPreprocessor(Preprocessor):
    """A word -> its letter counts over the alphabet seen in training, scaled by the mean word length."""

    default_encoder = "toy_letters"
    noise = Noise("count_noise_std", (0.0, 1.0, 4.0))  # the base class's Gaussian noise, at toy levels

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__(columns)
        self.alphabet: list[str] | None = None
        self.scale = 1.0

    def fit(self, frame: pd.DataFrame) -> "WordPreprocessor":
        words = [str(w) for w in frame[self.columns[0]] if not is_missing(w)]
        self.alphabet = sorted(set("".join(words)))
        self.scale = float(np.mean([len(w) for w in words]))
        return self

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        if is_missing(values[0]):
            return None
        counts = Counter(str(values[0]))
        return Sample(np.asarray([counts[c] for c in self.alphabet], np.float32) / self.scale)

    def empty(self) -> Sample:
        return Sample(np.zeros(len(self.alphabet or ()), np.float32))

    def encoder_facts(self) -> dict[str, Any]:
        return {"n_letters": len(self.alphabet)}

    def fitted_state(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "scale": self.scale}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.alphabet, self.scale = state["alphabet"], state["scale"]


class LetterEncoder(Encoder):
    def __init__(self, n_letters: int, dim: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_letters, dim), nn.GELU(), nn.Linear(dim, dim))
        self.output_dim = dim

    def forward(self, batch: Any) -> tuple[torch.Tensor, None]:
        return zero_absent(self.net(batch.data), batch.present), None


@pytest.fixture
def toy_modality():
    register("toy")(WordPreprocessor)
    register_encoder("toy_letters")(LetterEncoder)
    yield "toy"
    PREPROCESSORS.unregister("toy")
    ENCODERS.unregister("toy_letters")


def toy_table(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """The label is whether a word has more a's than b's; the number column is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = (5, 1) if i % 2 else (1, 5)
        letters = list("a" * int(a + rng.integers(0, 2)) + "b" * int(b + rng.integers(0, 2)) + "c" * int(rng.integers(0, 3)))
        rng.shuffle(letters)
        rows.append({"word": "".join(letters), "x": float(rng.normal()), "label": ["more_b", "more_a"][i % 2]})
    frame = pd.DataFrame(rows)
    frame.loc[3, "word"] = None  # a missing toy cell is handled like any other missing input
    return frame


SCHEMA = {"target": "label", "inputs": {"word": {"modality": "toy"}, "x": {"modality": "numeric", "columns": ["x"]}}}


def test_a_toy_modality_fits_predicts_and_evaluates_end_to_end(toy_modality, tmp_path):
    frame = toy_table()
    predictor = Predictor(model={"dim": 16}, train={"epochs": 20, "batch_size": 16, "lr": 1e-2, "patience": 0, "seed": 0})
    predictor.fit(frame, SCHEMA)
    assert type(predictor.model.encoders["word"]) is LetterEncoder  # the modality's default encoder, built from its facts
    assert predictor.model.encoders["word"].net[0].in_features == 3  # a, b, c

    loaded = Predictor.load(predictor.save(tmp_path / "model"))  # the fitted alphabet travels with the model
    assert loaded.pipeline.preprocessors["word"].alphabet == ["a", "b", "c"]
    new = toy_table(20, seed=1)
    predicted = loaded.predict(new)
    assert (predicted == new["label"]).mean() >= 0.9
    assert loaded.evaluate(new)["accuracy"] >= 0.9

    results = evaluate_predictor(loaded, toy_table(40, seed=2), n_boot=20)
    assert results["meta"]["inputs"] == {"word": "toy", "x": "numeric"}
    assert results["summary"]["accuracy"]["value"] >= 0.9
    noise = [r for r in results["robustness"]["noise"] if r["input"] == "word"]
    assert [r["level"] for r in noise] == [0.0, 1.0, 4.0] and {r["noise"] for r in noise} == {"count_noise_std"}
    assert noise[-1]["value"] < noise[0]["value"]  # heavy noise on the only informative input hurts
    missing = [r for r in results["robustness"]["missing"] if r["input"] == "word"]
    assert missing[-1]["value"] < missing[0]["value"]
    shown = [i for e in results["examples"] for i in e["inputs"] if i["input"] == "word"]
    assert shown and all(i["kind"] in ("text", "missing") for i in shown)  # the base class renders it as text


def test_a_toy_modality_is_inspected_and_monitored(toy_modality, tmp_path):
    path = tmp_path / "words.csv"
    toy_table(30).to_csv(path, index=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(SCHEMA))
    facts = inspect_table(path, schema=schema, examples=2, console=Console(file=io.StringIO()))
    assert facts["inputs"]["word"] == {"modality": "toy", "columns": ["word"], "missing": 1}
    assert facts["examples"]["word"][0].startswith("toy (3,) float32")

    predictor = Predictor(model={"dim": 8}, train={"epochs": 1, "batch_size": 16}).fit(path, schema)
    monitor = DriftMonitor(predictor.pipeline)
    monitor.observe_row({"word": "ab", "x": 10.0})
    summary = monitor.summary()
    assert summary["missing_rate"] == {"word": 0.0, "x": 0.0}
    assert list(summary["numeric"]) == ["x"]  # the toy modality keeps no statistics; numeric does
