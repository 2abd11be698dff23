"""speech_embedding: openWakeWord's ONNX copy of Google's speech_embedding gives the stored features on a real recording.

Reference values computed once with this implementation on FSDD ``3_jackson_0.wav`` (a
spoken "three", 0.49 s at 8 kHz) read as a 2 s, 16 kHz waveform.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from tessera.errors import SchemaError
from tests.encoders.towers import assert_rows_independent, fsdd_batch, load_tower

FIRST8 = [-8.6122, 15.0034, 3.8797, 2.1480, 6.0049, 24.0536, 5.8708, -8.8421]
NORM = 135.386


@pytest.fixture(scope="module")
def tower():
    return load_tower("speech_embedding")


@pytest.mark.realdata
def test_stored_features_on_a_real_recording(tower, shared_data):
    out = tower.embed(fsdd_batch(shared_data, ["3_jackson_0.wav"]))
    assert out.shape == (1, 96) and tower.output_dim == 96
    torch.testing.assert_close(out[0, :8], torch.tensor(FIRST8), rtol=0, atol=0.05)
    assert float(out[0].norm()) == pytest.approx(NORM, rel=2e-3)


@pytest.mark.realdata
def test_tokens_per_80ms_with_mask_and_absent_rows(tower, shared_data):
    batch = fsdd_batch(shared_data, ["3_jackson_0.wav", None, "7_theo_1.wav"])
    assert_rows_independent(tower, batch)
    tokens, mask = load_tower("speech_embedding", output="tokens")(batch)
    # 2 s = 197 mel frames -> (197 - 76) // 8 + 1 windows; a window counts when it starts in the clip.
    assert tokens.shape == (3, 16, 96)
    assert mask.sum(dim=1).tolist() == [7, 0, 5]  # 7772 and 5784 samples: starts every 1280 samples
    torch.testing.assert_close(tokens[0][mask[0]].mean(dim=0), tower.embed(batch)[0])


def test_frozen_only_and_says_so():
    with pytest.raises(SchemaError, match="onnxruntime.*frozen-only"):
        load_tower("speech_embedding", trainable=True)
    with pytest.raises(SchemaError, match="frozen-only"):
        load_tower("speech_embedding", train_blocks=1)


def test_refuses_inputs_shorter_than_one_window():
    with pytest.raises(SchemaError, match="at least 0.79 s"):
        load_tower("speech_embedding", samples=8000)


@pytest.mark.realdata
def test_pickles_for_serve_workers(tower, shared_data):
    """Model workers get a pickled copy: the ONNX Runtime sessions are reloaded from the package."""
    batch = fsdd_batch(shared_data, ["7_theo_1.wav"])
    copy = pickle.loads(pickle.dumps(tower))
    torch.testing.assert_close(copy.embed(batch), tower.embed(batch))
