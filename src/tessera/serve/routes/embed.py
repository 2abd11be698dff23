"""``/v1/embed``: one value of any input into the shared space."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tessera.serve.bodies import EMBED_FORM, EmbedBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.parsing import embed_part
from tessera.serve.problems import Problem
from tessera.serve.routes import json_response

router = APIRouter(tags=["embed"])


@router.post("/v1/embed", response_model=dict[str, Any], openapi_extra=body_doc(EmbedBody, EMBED_FORM))
async def embed(request: Request, caller: Caller) -> Response:
    """One value of any input into the shared space: JSON {input, text | base64} or multipart (input, text | file)."""
    models = caller.state.models
    if models.embed_batcher is None:
        raise Problem(404, "this server has no embedder (start it with --index or --embedder)", kind="no_model")
    f, value, _ = await embed_part(request, caller, models.embed_fields)
    vector = await models.embed_batcher.submit((f.input, value))
    caller.state.monitor.observe_vectors(f.modality, vector[None])
    return json_response({"request_id": request.state.request_id, "input": f.input, "modality": f.modality,
                          "dim": int(vector.shape[0]), "vector": vector.tolist()})
