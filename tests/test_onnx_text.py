"""Text inputs in ONNX Runtime: the float32 export reproduces the torch embedder, int8 stays close, the server uses it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::Warning")  # the exporter's tracer warnings

TEXTS = ["dog", "a dog runs on the beach", "two children play football in the park on a sunny afternoon", "a red car", "?!"]


@pytest.fixture(scope="module")
def embedder(minilm: str):
    from tessera.align import Embedder

    return Embedder.from_sentence_transformer(minilm, input_name="caption")


def test_float32_export_reproduces_the_torch_embedder_and_survives_pickling(embedder) -> None:
    from tessera.errors import DataError
    from tessera.onnx_text import onnx_text_inputs

    model = onnx_text_inputs(embedder)["caption"]
    ours = model.embed(TEXTS)  # one batch of very different lengths: padding and trimming
    np.testing.assert_allclose(ours, embedder.embed("caption", TEXTS), atol=2e-5)
    np.testing.assert_allclose(model.embed(TEXTS[2:3]), ours[2:3], atol=2e-5)  # alone, no padding
    copy = pickle.loads(pickle.dumps(model))  # as a worker process receives it: the session is rebuilt
    np.testing.assert_allclose(copy.embed(TEXTS), ours, atol=1e-6)
    assert model.embed([]).shape == (0, 384)
    with pytest.raises(DataError, match="value 1: expected text"):
        model.embed(["fine", b"\x89PNG"])
    with pytest.raises(DataError, match="value 0: no text"):
        model.embed([None])


def test_int8_export_is_smaller_and_stays_close(embedder) -> None:
    from tessera.onnx_text import cosine_to_torch, onnx_text_inputs

    fp32, int8 = onnx_text_inputs(embedder)["caption"], onnx_text_inputs(embedder, quantize=True)["caption"]
    assert len(int8.model) < 0.5 * len(fp32.model)
    cos = cosine_to_torch(embedder, "caption", int8, TEXTS)
    assert cos.min() > 0.95 and cos.mean() > 0.98, cos
    assert not np.allclose(int8.embed(TEXTS), fp32.embed(TEXTS), atol=1e-4)  # it really is another model
