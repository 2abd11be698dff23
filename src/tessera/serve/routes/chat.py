"""``/v1/chat/completions``, OpenAI-compatible: messages with text, image and audio parts in, one reply out.

What an OpenAI client sends works as sent: ``image_url`` parts as data URLs, ``input_audio``
parts (base64 wav or mp3), ``max_tokens`` or ``max_completion_tokens``, ``temperature``,
``top_p``, ``stop``, ``seed``, and ``stream: true`` for server-sent events in OpenAI's chunk
format, ended by ``data: [DONE]`` (with ``stream_options.include_usage``, a last chunk with
the token counts). ``n`` above 1 is refused: one choice per request.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tessera.serve.bodies import ChatBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.generators import Generation, start_reply
from tessera.serve.parsing import chat_conversation, read_json, validate
from tessera.serve.problems import Problem
from tessera.serve.routes import DONE, json_response, sse_response
from tessera.serve.routes.generate import new_tokens

router = APIRouter(tags=["generate"])


@router.post("/v1/chat/completions", response_model=dict[str, Any], openapi_extra=body_doc(ChatBody))
async def chat_completions(request: Request, caller: Caller) -> Response:
    """OpenAI's chat completion: messages (text, image_url data URLs, input_audio) -> one reply, or its chunks."""
    key, state = caller
    body: ChatBody = validate(ChatBody, await read_json(request))
    if body.n not in (None, 1):
        raise Problem(422, f"n={body.n}: this server writes one choice per request (n must be 1); send several "
                      "requests for several replies", kind="invalid_request", param="n")
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise Problem(422, "give max_completion_tokens or max_tokens, not both", kind="invalid_request",
                      param="max_completion_tokens")
    served = state.generators.get(body.model, "chat")
    messages, media = chat_conversation(body.messages, served, caller)
    state.generators.admit(served)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > 4 or any(not s or len(s) > 200 for s in stops):
        raise Problem(422, "stop: up to 4 non-empty strings of at most 200 characters", kind="invalid_request",
                      param="stop")
    asked = body.max_completion_tokens or body.max_tokens
    reply = await run_in_threadpool(start_reply, served.model, media, messages,
                                    max_new_tokens=new_tokens(asked, state.config.max_new_tokens),
                                    temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                                    fit_context=asked is None)
    generation = Generation(state.generators, served, reply, stops)
    head = {"id": f"chatcmpl-{request.state.request_id}", "created": int(time.time()), "model": served.id}
    cells = {"messages": json.dumps(messages), **({served.modality: media} if media is not None else {})}
    fields = {served.modality: served.field} if media is not None else {}
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return sse_response(_chunks(generation, head, usage, state, key.id, cells, fields))
    text = await generation.complete()
    await state.log_request(request.state.request_id, "chat", key.id, cells, text, fields)
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
              "finish_reason": generation.finish_reason}
    return json_response({**head, "object": "chat.completion", "choices": [choice], "usage": generation.usage})


async def _chunks(generation: Generation, head: dict[str, Any], usage: bool, state: Any, key_id: str,
                  cells: dict[str, Any], fields: dict[str, Any]) -> AsyncIterator[dict[str, Any] | bytes]:
    """OpenAI's chunks: the role, the text piece by piece, the finish reason, (the usage), ``[DONE]``."""
    chunk = {**head, "object": "chat.completion.chunk"}

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**chunk, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}

    yield delta({"role": "assistant", "content": ""})
    async for piece in generation:
        yield delta({"content": piece})
    yield delta({}, generation.finish_reason)
    if usage:
        yield {**chunk, "choices": [], "usage": generation.usage}
    await state.log_request(head["id"].removeprefix("chatcmpl-"), "chat", key_id, cells, generation.text, fields)
    yield DONE
