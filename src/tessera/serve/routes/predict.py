"""``/v1/predict``: one example in (a form field per input, or JSON with base64 media), the model's prediction out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tessera.serve.bodies import PREDICT_FORM, PredictBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.parsing import predict_cells
from tessera.serve.problems import Problem
from tessera.serve.routes import json_response

router = APIRouter(tags=["predict"])


@router.post("/v1/predict", response_model=dict[str, Any], openapi_extra=body_doc(PredictBody, PREDICT_FORM))
async def predict(request: Request, caller: Caller) -> Response:
    """Predict from one example: multipart (a field per input) or JSON with base64 media."""
    key, state = caller
    models = state.models
    if models.predict_batcher is None:
        raise Problem(404, "this server has no prediction model (start it with --model)", kind="no_model")
    cells = await predict_cells(request, caller, models.predict_fields)
    result = await models.predict_batcher.submit(cells)
    state.monitor.observe_row(cells)
    rid = request.state.request_id
    target = models.predictor.pipeline.target.columns
    await state.log_request(rid, "predict", key.id, cells, result, models.predict_fields, target)
    return json_response({"request_id": rid, **result})
