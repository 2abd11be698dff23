"""``/v1/monitor``: drift of what the server receives against what its models were trained on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from tessera.serve.dependencies import Caller

router = APIRouter(tags=["models"])


@router.get("/v1/monitor")
async def monitor_summary(caller: Caller) -> dict[str, Any]:
    """Drift of incoming data against training data (what `tessera monitor` prints)."""
    return await run_in_threadpool(caller.state.monitor.summary)
