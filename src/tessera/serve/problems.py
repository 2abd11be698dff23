"""Errors as RFC 9457 problem-details JSON: every failure a client sees has a status, a title and a clear detail.

Handlers are installed for our own :class:`Problem`, FastAPI's validation errors, Starlette's
HTTP errors, a search filter the index refuses (422), Tessera's data/schema errors (the
request's content is unusable: 422) and, last, anything else (500, logged with its
traceback, nothing internal sent to the client).

The OpenAI-compatible routes (:data:`OPENAI_PATHS`) answer in a shape OpenAI's clients read
as well: the problem's fields plus an ``error`` object (``message``, ``type``, ``param``,
``code``), which is where the official ``openai`` package takes an exception's message from;
and, as OpenAI does, 400 rather than 415 or 422 for a request it cannot use, so the client
raises ``BadRequestError``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from tessera.errors import TesseraError
from tessera.index.filters import FilterError
from tessera.serve.workers import WorkerCrashed

log = logging.getLogger("tessera.serve")
MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/images/generations", "/v1/audio/speech", "/v1/models"})
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                413: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, detail: str, kind: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for a problem (``code`` is the problem's kind)."""
    kind_of_error = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": detail, "type": kind_of_error, "param": param, "code": kind}


def problem_body(path: str | None, status: int, detail: str, kind: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON of a problem, with OpenAI's ``error`` object (and 400 for 415/422) on its routes."""
    openai = path in OPENAI_PATHS
    if openai and status in (415, 422):
        status = 400
    body = {"type": f"https://tessera.dev/problems/{kind}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    if openai:
        body["error"] = openai_error(status, detail, kind, extra.get("param"))
    return status, body


class Problem(Exception):
    """Raise anywhere in a route to answer with problem details; ``kind`` labels the error metric."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra
        self.kind = kind or TITLES.get(status, "error").lower().replace(" ", "_")


def problem_response(request: Request | None, status: int, detail: str, kind: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    status, body = problem_body(request.url.path if request is not None else None, status, detail, kind, **extra)
    if request is not None:
        body["instance"] = request.url.path
        rid = getattr(request.state, "request_id", None)
        if rid:
            body["request_id"] = rid
        request.state.error_kind = kind
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        errors.append({"field": loc, "message": e.get("msg", "invalid")})
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail, errors


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, exc.kind, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return problem_response(request, 422, detail, "invalid_request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such route: {request.method} {request.url.path}"
        return problem_response(request, exc.status_code, detail, TITLES.get(exc.status_code, "http_error").lower().replace(" ", "_"), exc.headers)

    @app.exception_handler(FilterError)
    async def _filter(request: Request, exc: FilterError) -> JSONResponse:
        return problem_response(request, 422, str(exc), "invalid_filter")

    @app.exception_handler(TesseraError)
    async def _tessera(request: Request, exc: TesseraError) -> JSONResponse:
        return problem_response(request, 422, str(exc), "unusable_input")

    @app.exception_handler(WorkerCrashed)
    async def _worker(request: Request, exc: WorkerCrashed) -> JSONResponse:
        log.error("%s on %s %s", exc, request.method, request.url.path)
        return problem_response(request, 503, str(exc), "model_worker_restarted", {"Retry-After": "1"})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        log.info("client went away during %s %s", request.method, request.url.path)
        return problem_response(request, 400, "the client disconnected before the request body was complete", "client_disconnected")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "the server failed on this request; the error is in its log", "internal")
