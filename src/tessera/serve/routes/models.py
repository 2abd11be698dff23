"""``/v1/models``: what this server serves, and which request fields each route accepts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tessera.index.filters import filterable
from tessera.serve.dependencies import Caller
from tessera.serve.workers import plain_value

router = APIRouter(tags=["models"])


@router.get("/v1/models")
async def models(caller: Caller) -> dict[str, Any]:
    """What this server serves, and which fields each route accepts; ``data`` lists the generators as OpenAI's clients read it."""
    served, config = caller.state.models, caller.state.config
    out: dict[str, Any] = {"object": "list", "data": caller.state.generators.listing()}
    if served.predictor is not None:
        target = served.predictor.pipeline.target
        out["predictor"] = {
            "task": target.task,
            "target": target.columns,
            "classes": None if getattr(target, "classes", None) is None else [plain_value(c) for c in target.classes],
            "inputs": {n: p.modality for n, p in served.predictor.pipeline.preprocessors.items()},
            "fields": {name: f.modality for name, f in served.predict_fields.items()},
        }
    if served.embedder is not None:
        out["embedder"] = {"inputs": served.embedder.inputs, "dim": served.embedder.dim,
                           "onnx_runtime_inputs": sorted(served.onnx_text)}
    if served.searcher is not None:
        idx = served.searcher.index
        out["index"] = {
            "rows": len(idx),
            "modality": served.searcher.info.get("modality"),
            "filters": filterable(idx.metadata_columns),
        }
    out["batching"] = {"enabled": config.batching, "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms}
    return out
