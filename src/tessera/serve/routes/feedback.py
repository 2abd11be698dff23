"""``/v1/feedback``: a correction or rating for an earlier prediction or search result, kept beside its request."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter

from tessera.serve.bodies import FeedbackBody
from tessera.serve.dependencies import Caller
from tessera.serve.problems import Problem

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", status_code=201)
async def feedback(body: FeedbackBody, caller: Caller) -> dict[str, Any]:
    """A correction or rating for an earlier prediction or search result (by its request id)."""
    if body.correction is None and body.rating is None:
        raise Problem(422, "feedback needs a correction or a rating", kind="invalid_request")
    key, state = caller
    add = partial(state.store.add, body.request_id, key.id, item_id=body.item_id, prediction=body.prediction,
                  correction=body.correction, rating=body.rating, comment=body.comment)
    try:
        fid = await state.write(add)
    except KeyError:
        raise Problem(404, f"no prediction or search with request id {body.request_id!r} is on record",
                      kind="unknown_request") from None
    return {"feedback_id": fid, "request_id": body.request_id}
