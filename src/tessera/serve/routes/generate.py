"""``/v1/generate``: Tessera's own text generation: a prompt (and the image or sound it is about) in, text out."""

from __future__ import annotations

from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tessera.serve.bodies import GENERATE_FORM, GenerateBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.generators import Generation, start_reply
from tessera.serve.parsing import generate_request
from tessera.serve.problems import Problem
from tessera.serve.routes import json_response, sse_response

router = APIRouter(tags=["generate"])
DEFAULT_NEW_TOKENS = 128


def new_tokens(asked: int | None, cap: int) -> int:
    """The reply's token budget: what the request asks, never over the server's cap; by default at most 128."""
    if asked is not None and asked > cap:
        raise Problem(422, f"max_tokens {asked} is over this server's limit of {cap}", kind="invalid_request",
                      param="max_tokens")
    return asked or min(DEFAULT_NEW_TOKENS, cap)


@router.post("/v1/generate", response_model=dict[str, Any], openapi_extra=body_doc(GenerateBody, GENERATE_FORM))
async def generate(request: Request, caller: Caller) -> Response:
    """Text from a text model: JSON {prompt, input (base64), ...} or a form (prompt, file, ...); ``stream`` for events."""
    key, state = caller
    served, body, media = await generate_request(request, caller)
    state.generators.admit(served)
    reply = await run_in_threadpool(start_reply, served.model, media, body.prompt,
                                    max_new_tokens=new_tokens(body.max_tokens, state.config.max_new_tokens),
                                    temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                                    fit_context=body.max_tokens is None)
    generation = Generation(state.generators, served, reply, body.stop or ())
    rid = request.state.request_id
    cells = {"prompt": body.prompt or "", **({served.modality: media} if media is not None else {})}
    fields = {served.modality: served.field} if media is not None else {}
    if body.stream:
        return sse_response(_events(generation, rid, served.id, state, key.id, cells, fields))
    text = await generation.complete()
    await state.log_request(rid, "generate", key.id, cells, text, fields)
    return json_response({"request_id": rid, "model": served.id, "text": text,
                          "finish_reason": generation.finish_reason, "usage": generation.usage})


async def _events(generation: Generation, rid: str, model: str, state: Any, key_id: str,
                  cells: dict[str, Any], fields: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """``{"text": piece}`` while the reply is written, then ``{"done": true, ...}`` with the whole of it."""
    async for piece in generation:
        yield {"text": piece}
    await state.log_request(rid, "generate", key_id, cells, generation.text, fields)
    yield {"done": True, "request_id": rid, "model": model, "text": generation.text,
           "finish_reason": generation.finish_reason, "usage": generation.usage}
