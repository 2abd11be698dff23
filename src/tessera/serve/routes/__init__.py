"""The HTTP routes, one :class:`~fastapi.APIRouter` per module; how the model routes answer: JSON, or server-sent events."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from fastapi.responses import Response, StreamingResponse
from pydantic_core import to_json

from tessera.errors import TesseraError
from tessera.serve.problems import Problem, openai_error

log = logging.getLogger("tessera.serve")
DONE = b"[DONE]"  # OpenAI's last event


def json_response(payload: dict[str, Any]) -> Response:
    """A JSON response serialised by pydantic-core in Rust.

    FastAPI's default path (pydantic validation of the return value, then ``json.dumps``) took
    ~0.5 ms for one 384-float vector, on the event loop, holding the GIL the model thread needs;
    this takes ~0.03 ms. The routes still declare their response model for the OpenAPI spec.
    """
    return Response(to_json(payload), media_type="application/json")


def sse_response(events: AsyncIterator[dict[str, Any] | bytes]) -> StreamingResponse:
    """Server-sent events, one ``data:`` line per event (a dict as JSON, bytes as they are).

    Once the response has started its status cannot change, so an error on the way becomes
    a last event ``{"error": {message, type, param, code}}``: what OpenAI sends, and what its
    client raises as an ``APIError`` with that message.
    """

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield b"data: " + (event if isinstance(event, bytes) else to_json(event)) + b"\n\n"
        except Problem as e:
            yield b"data: " + to_json({"error": openai_error(e.status, e.detail, e.kind)}) + b"\n\n"
        except TesseraError as e:
            yield b"data: " + to_json({"error": openai_error(400, str(e), "unusable_input")}) + b"\n\n"
        except Exception:
            log.exception("a streamed response failed")
            error = openai_error(500, "the server failed while streaming; the error is in its log", "internal")
            yield b"data: " + to_json({"error": error}) + b"\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
