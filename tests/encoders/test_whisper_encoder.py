"""whisper_encoder: Whisper tiny.en's encoder (CTranslate2 int8) gives the stored features on a real recording.

Reference values computed once with this implementation on FSDD ``3_jackson_0.wav``; int8
kernels differ a little between CPUs, hence the tolerances.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from tessera.errors import SchemaError
from tests.encoders.towers import assert_rows_independent, fsdd_batch, load_tower

FIRST8 = [-0.8620, -0.1667, 0.3888, 1.0533, -0.1095, -0.1094, 0.3830, -1.6755]
NORM = 16.783


@pytest.fixture(scope="module")
def tower():
    return load_tower("whisper_encoder")


@pytest.mark.realdata
def test_stored_features_tokens_and_absent_rows(tower, shared_data):
    batch = fsdd_batch(shared_data, ["3_jackson_0.wav", None])
    out = tower.embed(batch)
    assert out.shape == (2, 384) and tower.output_dim == 384
    torch.testing.assert_close(out[0, :8], torch.tensor(FIRST8), rtol=0, atol=0.05)
    assert float(out[0].norm()) == pytest.approx(NORM, rel=0.01)
    assert_rows_independent(tower, batch)
    tokens, mask = load_tower("whisper_encoder", output="tokens")(batch)
    # 7772 samples -> 49 mel frames of 10 ms -> 25 encoder frames of 20 ms, out of 1500 (30 s).
    assert tokens.shape == (2, 1500, 384) and mask.sum(dim=1).tolist() == [25, 0]


def test_frozen_only_and_30_second_window():
    with pytest.raises(SchemaError, match="ctranslate2.*frozen-only"):
        load_tower("whisper_encoder", trainable=True)
    with pytest.raises(SchemaError, match="at most 30 s"):
        load_tower("whisper_encoder", samples=16000 * 31)


@pytest.mark.realdata
def test_pickles_for_serve_workers(tower, shared_data):
    """Model workers get a pickled copy: the CTranslate2 model are reloaded from the package."""
    batch = fsdd_batch(shared_data, ["7_theo_1.wav"])
    copy = pickle.loads(pickle.dumps(tower))
    torch.testing.assert_close(copy.embed(batch), tower.embed(batch))
