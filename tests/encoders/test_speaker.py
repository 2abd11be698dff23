"""speaker: Resemblyzer's GE2E weights load into the split-layer LSTM and give the stored embedding on a real recording.

Reference values computed once with this implementation on FSDD ``3_jackson_0.wav``; GE2E
vectors are non-negative and unit length, and two takes of one speaker are closer than two
speakers saying the same digit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.encoders.towers import assert_rows_independent, assert_train_blocks, fsdd_batch, load_tower

TOP_DIMS = [243, 104, 197, 58, 124, 36]
TOP_VALUES = [0.2660, 0.2273, 0.2167, 0.1953, 0.1865, 0.1833]


@pytest.fixture(scope="module")
def tower():
    return load_tower("speaker")


@pytest.mark.realdata
def test_stored_embedding_and_speaker_similarity(tower, shared_data):
    batch = fsdd_batch(shared_data, ["3_jackson_0.wav", "3_jackson_1.wav", "3_theo_0.wav", None])
    out = tower.embed(batch)
    assert out.shape == (4, 256) and tower.output_dim == 256
    torch.testing.assert_close(out[0, TOP_DIMS], torch.tensor(TOP_VALUES), rtol=0, atol=0.01)
    torch.testing.assert_close(out[:3].norm(dim=1), torch.ones(3))
    assert (out >= 0).all()
    same, other = F.cosine_similarity(out[0], out[1], dim=0), F.cosine_similarity(out[0], out[2], dim=0)
    assert same > other + 0.05  # measured 0.89 vs 0.77
    assert_rows_independent(tower, batch)


def test_frozen_by_default_and_train_blocks(tower):
    assert tower.frozen and not any(p.requires_grad for p in tower.parameters())
    # 4 blocks: three LSTM layers and the output layer.
    assert_train_blocks("speaker", 2, lambda t: ([t.layers[2], t.linear], t.layers[1]))
