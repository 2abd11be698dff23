"""Liveness, readiness and Prometheus metrics: what an orchestrator and a scraper ask."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tessera.serve.dependencies import Caller, State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(state: State) -> JSONResponse:
    """Readiness: models loaded and their batch workers alive."""
    ready = state.models.alive
    return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def prometheus(caller: Caller) -> Response:
    """Prometheus metrics: requests, latencies, inference time, batch sizes, errors by kind, drift."""
    return Response(await run_in_threadpool(caller.state.metrics.render), media_type="text/plain; version=0.0.4")
