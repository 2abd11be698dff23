"""``/v1/feedback``: a correction or rating for an earlier prediction or search result, kept beside its request.

Feedback belongs to the key that made the request: another key's request id is answered as
unknown (404), so ids cannot be probed. A correction must be a value of the model's target
(the task decides: :meth:`~tessera.tasks.base.Task.target_cells`) and is stored as the
target cells it becomes; a generated reply's correction is the right reply, as text; a
search takes a rating of one of its own results.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from tessera.errors import DataError
from tessera.serve.bodies import FeedbackBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.parsing import feedback_body
from tessera.serve.problems import Problem

router = APIRouter(tags=["feedback"])
MAX_PREDICTION_CHARS = 4000  # the prediction as the client saw it, as JSON
GENERATED = ("generate", "chat")  # routes whose output is a reply (text)


@router.post("/v1/feedback", status_code=201, response_model=dict[str, Any], openapi_extra=body_doc(FeedbackBody))
async def feedback(request: Request, caller: Caller) -> dict[str, Any]:
    """A correction or rating for an earlier prediction or search result (by its request id, made with the same key)."""
    body = await feedback_body(request)
    if body.correction is None and body.rating is None:
        raise Problem(422, "feedback needs a correction or a rating", kind="invalid_request")
    if body.prediction is not None and len(json.dumps(body.prediction)) > MAX_PREDICTION_CHARS:
        raise Problem(413, f"prediction: at most {MAX_PREDICTION_CHARS} characters of JSON", kind="payload_too_large")
    key, state = caller
    unknown = Problem(404, f"no prediction or search with request id {body.request_id!r} is on record for this key",
                      kind="unknown_request")
    logged = await state.write(state.store.request, body.request_id)
    if logged is None or logged.key_id != key.id:
        raise unknown
    correction = body.correction
    if logged.route == "search":
        if correction is not None:
            raise Problem(422, "feedback on a search is a rating of one of its results (item_id), not a correction",
                          kind="invalid_request")
        ids = logged.output.get("ids", []) if isinstance(logged.output, dict) else []
        if body.item_id is not None and body.item_id not in ids:
            raise Problem(422, f"item_id {body.item_id!r} is not one of this search's results", kind="invalid_request")
    elif logged.route in GENERATED:
        if correction is not None and not isinstance(correction, str):
            raise Problem(422, "the correction of a generated reply is the right reply, as a string",
                          kind="invalid_correction")
        if correction is not None and len(correction) > MAX_PREDICTION_CHARS:
            raise Problem(413, f"correction: at most {MAX_PREDICTION_CHARS} characters", kind="payload_too_large")
    elif correction is not None:
        correction = _checked(state, correction)
    add = partial(state.store.add, body.request_id, key.id, item_id=body.item_id, prediction=body.prediction,
                  correction=correction, rating=body.rating, comment=body.comment)
    try:
        fid = await state.write(add)
    except KeyError:
        raise unknown from None
    return {"feedback_id": fid, "request_id": body.request_id}


def _checked(state: Any, correction: Any) -> Any:
    """The correction as the model's task reads a target: one value, or (several target columns) one per column."""
    predictor = state.models.predictor
    if predictor is None:
        raise Problem(422, "this server no longer serves the model that made this prediction", kind="invalid_request")
    task = predictor.pipeline.target
    try:
        cells = task.target_cells(correction)
    except DataError as e:
        raise Problem(422, f"correction: {e.reason}", kind="invalid_correction") from None
    return next(iter(cells.values())) if len(cells) == 1 else cells
