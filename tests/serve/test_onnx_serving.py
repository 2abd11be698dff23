"""The server with --runtime onnx: text inputs go through ONNX Runtime, in-process and in worker processes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::Warning")  # the exporter's tracer warnings


@pytest.fixture(scope="module")
def embedder(minilm: str):
    from tessera.align import Embedder

    return Embedder.from_sentence_transformer(minilm, input_name="caption")


def test_only_sentence_transformer_text_inputs_are_exported(built) -> None:
    from tessera.align import Embedder
    from tessera.errors import SchemaError
    from tessera.onnx_text import export_text, onnx_text_inputs

    tiny = Embedder.load(built.embedder)  # image + caption with Tessera's own text transformer
    assert onnx_text_inputs(tiny) == {}
    with pytest.raises(SchemaError, match="input 'caption' uses encoder 'text_transformer'"):
        export_text(tiny, "caption")


def test_the_server_embeds_text_through_onnx_runtime(embedder, keys_file, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from tessera.serve import ServeConfig, create_app, load_models

    folder = embedder.save(tmp_path / "space")
    loaded = load_models(None, None, folder, runtime="onnx")
    want = loaded["onnx_text"]["caption"].embed(["a red square"])[0]
    for processes in (0, 1):
        app = create_app(ServeConfig(keys_file=keys_file[0], feedback_db=str(tmp_path / "f.db"), model_processes=processes, torch_threads=1), **loaded)
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {keys_file[1]}"}
            assert client.get("/v1/models", headers=headers).json()["embedder"]["onnx_runtime_inputs"] == ["caption"]
            r = client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(np.array(r.json()["vector"], dtype=np.float32), want, atol=1e-6)
