"""The sampling-time text prior: a prompt's vector becomes a mix of its nearest training-caption vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tessera.errors import SchemaError, TesseraError
from tessera.generate.captions import CAPTIONS
from tessera.generate.diffusion import PriorSettings, TextConditioner, TextPrior, as_prior_settings
from tessera.generate.text2image import load_config


def bank() -> tuple[list[str], torch.Tensor]:
    return [f"caption {i}" for i in range(4)], torch.eye(4)  # four orthogonal unit vectors


def test_a_query_near_one_caption_maps_onto_it():
    prompts, vectors = bank()
    query = F.normalize(torch.tensor([[0.2, 1.0, 0.1, 0.0]]), dim=1)
    out = TextPrior(prompts, vectors, PriorSettings(knn=2, temperature=0.05))(query)
    assert torch.allclose(out.norm(dim=1), torch.ones(1))  # back on the unit sphere, like every training prompt
    assert out[0].argmax().item() == 1 and out[0, 1] > 0.99  # all but ~0 weight on the nearest caption
    weights, idx = TextPrior(prompts, vectors, PriorSettings(knn=2, temperature=0.05)).neighbours(query)
    assert idx[0].tolist() == [1, 0] and torch.allclose(weights.sum(1), torch.ones(1))


def test_a_high_temperature_averages_the_k_nearest():
    prompts, vectors = bank()
    query = F.normalize(torch.tensor([[0.3, 1.0, 0.0, 0.0]]), dim=1)
    out = TextPrior(prompts, vectors, PriorSettings(knn=2, temperature=100.0))(query)
    assert float(out[0, 0]) == pytest.approx(float(out[0, 1]), abs=0.01)
    assert float(out[0, 2:].abs().max()) < 1e-6  # only the 2 nearest


def test_knn_larger_than_the_bank_uses_every_caption():
    prompts, vectors = bank()
    _, idx = TextPrior(prompts, vectors, PriorSettings(knn=50)).neighbours(torch.ones(1, 4))
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3]


def test_bad_prior_settings_are_clear_errors():
    with pytest.raises(SchemaError, match=r"prior.knn: Input should be greater than or equal to 1"):
        load_config({"prior": {"knn": 0}}, "cfg.yaml")
    with pytest.raises(SchemaError, match=r"prior: temperature: Input should be greater than 0"):
        as_prior_settings({"temperature": 0})
    with pytest.raises(TesseraError, match="prior must be 'default', 'off'"):
        as_prior_settings("on")
    with pytest.raises(TesseraError, match="one vector per training caption"):
        TextPrior(["a"], torch.eye(2), PriorSettings())
    assert load_config({"prior": {"knn": 4, "temperature": 0.1}}, "cfg.yaml").prior == PriorSettings(knn=4, temperature=0.1)
    assert load_config({}, "cfg.yaml").prior is None  # off unless the config asks


def test_validation_paraphrases_map_mostly_onto_their_own_class(minilm):
    """With MiniLM, a new phrasing's k nearest training captions are (mostly) of its class: the prior's premise."""
    text = TextConditioner(minilm)
    table = CAPTIONS["fashion_mnist"]
    train, val = table.pairs("train"), table.pairs("validation")
    labels = np.array([label for label, _ in train])
    prior = TextPrior([c for _, c in train], text([c for _, c in train]), PriorSettings(knn=8, temperature=0.05))
    weights, idx = prior.neighbours(text([c for _, c in val]))
    own = [float(weights[r][torch.from_numpy(labels[idx[r].numpy()] == label)].sum()) for r, (label, _) in enumerate(val)]
    assert np.mean(own) > 0.75, own
    mapped = prior(text(["a photo of a sneaker"]))  # a training caption maps (almost) onto itself
    assert float(mapped @ text(["a photo of a sneaker"]).T) > 0.9
