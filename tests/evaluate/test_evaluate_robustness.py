import math

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.evaluate.robustness import NOISE_LEVELS, add_noise_at_snr, corrupt, drop_tokens, missing_curve, noise_curve
from tessera.pipeline import cache_split
from tessera.predictor import Predictor
from tessera.preprocess import ModalityBatch
from tessera.preprocess.audio import LOG_EPS
from tessera.preprocess.text import TextPreprocessor
from tessera.table import read_table


def test_audio_noise_is_added_in_the_power_domain_at_the_requested_snr():
    power = torch.full((2, 8, 50), 4.0, dtype=torch.float64)
    batch = ModalityBatch(torch.log(power + LOG_EPS).float(), torch.tensor([True, False]), torch.arange(50).expand(2, 50) < 40)
    gen = torch.Generator().manual_seed(0)
    noisy = add_noise_at_snr(batch, 0.0, gen)
    added = noisy[0, :, :40].double().exp() - LOG_EPS - 4.0
    # 0 dB: mean noise power equals the clip's mean power (exponential fluctuation around it)
    assert added.mean().item() == pytest.approx(4.0, rel=0.1)
    assert (added > 0).all()
    assert torch.equal(noisy[0, :, 40:], batch.data[0, :, 40:])  # padded frames untouched
    assert torch.equal(noisy[1], batch.data[1])  # absent row untouched
    quiet = add_noise_at_snr(batch, 30.0, torch.Generator().manual_seed(0))
    assert (quiet[0, :, :40].double().exp() - LOG_EPS - 4.0).mean().item() == pytest.approx(0.004, rel=0.1)
    assert torch.equal(add_noise_at_snr(batch, math.inf, gen), batch.data)


def test_token_dropout_replaces_ordinary_tokens_with_unk():
    pre = TextPreprocessor(["t"], vocab_size=100, min_frequency=1, max_length=10).fit(
        pd.DataFrame({"t": ["a red square", "a blue circle at night"]})
    )
    ids, mask = pre.encode_batch(["a red square", "a blue circle"])
    batch = ModalityBatch(torch.from_numpy(ids), torch.tensor([True, True]), torch.from_numpy(mask))
    out = drop_tokens(batch, pre, 1.0, torch.Generator().manual_seed(0))
    special = {0, 2, 3}  # [PAD], [CLS], [SEP] stay where they were
    for before, after, valid in zip(ids, out.data.numpy(), mask):
        for b, a, v in zip(before, after, valid):
            assert a == (b if (b in special or not v) else 1)
    assert torch.equal(drop_tokens(batch, pre, 0.0, torch.Generator()).data, batch.data)


def test_numeric_and_categorical_noise_spare_absent_rows():
    gen = torch.Generator().manual_seed(0)

    class Pre:
        modality = "numeric"

    batch = ModalityBatch(torch.zeros(4, 3), torch.tensor([True, True, False, True]), torch.ones(4, 3, dtype=torch.bool))
    out = corrupt(batch, Pre(), 1.0, gen)
    assert (out.data[2] == 0).all() and out.data[[0, 1, 3]].std() > 0.5
    Pre.modality = "categorical"
    cats = ModalityBatch(torch.tensor([[2, 0], [3, 4]]), torch.tensor([True, True]), torch.ones(2, 2, dtype=torch.bool))
    assert corrupt(cats, Pre(), 1.0, gen).data.tolist() == [[1, 0], [1, 1]]  # missing (0) stays missing


def test_curves_of_a_trained_model(tiny_table, tiny_schema):
    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "audio")}}
    predictor = Predictor(model={"dim": 16}, train={"epochs": 10, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 0})
    pipeline, sources = predictor.prepare_data(tiny_table, schema)
    predictor.fit_prepared(pipeline, sources)
    split = cache_split(pipeline, pipeline.dataset(read_table(tiny_table)))

    missing = missing_curve(predictor.model, split, pipeline.target)
    assert list(missing.columns) == ["input", "fraction_missing", "metric", "value"]
    assert len(missing) == 2 * 5
    for _, curve in missing.groupby("input"):
        values = curve.sort_values("fraction_missing")["value"].to_numpy()
        assert values[0] > 0.9  # label = 2 * image bit + audio bit: needs both inputs
        assert values[-1] < 0.75  # without one input, at most half the classes are told apart
        assert np.all(np.diff(values) < 0.1)  # monotone-ish

    noise = noise_curve(predictor.model, pipeline, split, pipeline.target, levels={"image": [0.0, 1.0, 8.0]})
    assert set(noise["input"]) == {"image", "audio"}
    assert len(noise) == 3 + len(NOISE_LEVELS["audio"][1])
    for _, curve in noise.groupby("input"):
        values = curve.sort_values("severity")["value"].to_numpy()
        assert values[-1] < values[0]
        assert np.all(np.diff(values) < 0.1)
