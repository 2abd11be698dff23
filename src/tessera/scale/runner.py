"""Choosing where a job runs: ``local`` (this process) or ``ray`` (a Ray cluster).

Addresses follow Ray's own conventions: none starts a local cluster on this machine for the
job (and stops it afterwards), ``auto`` joins the cluster already running here (``ray
start --head``), ``ray://host:10001`` connects to a remote one through Ray Client. A
session that is already initialised (a notebook, a test fixture) is used as it is. Which
runner a job uses is a config value (:func:`tessera.config.check_runner` validates it); the
command line picks the code.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from tessera.errors import TesseraError


def require_ray() -> Any:
    """Import Ray, or say how to get it."""
    try:
        import ray
    except ImportError:
        raise TesseraError("the Ray runner needs Ray: pip install 'tessera[ray]'") from None
    return ray


STARTUP_ATTEMPTS = 3


def init_ray(**kwargs: Any) -> Any:
    """``ray.init``, tried again when a local node times out starting up.

    Ray gives a starting node a fixed 30 s to register (``ray._private.node``); on a busy
    machine that is not always enough (issue 18: the Ray tests failed under load and passed
    alone), and a second try, with the first one's processes gone, usually is.
    """
    ray = require_ray()
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            return ray.init(**kwargs)
        except ConnectionError:
            raise
        except Exception as e:  # Ray raises a bare Exception for this one
            if "timed out during startup" not in str(e) or attempt == STARTUP_ATTEMPTS:
                raise
            ray.shutdown()
    return None


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[Any]:
    """Yield the ``ray`` module with a connected session; shut down only a cluster started here."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray warns at length about the working directory and metrics on a local run; keep the output to ours.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **init_kwargs}
    if address:
        kwargs.pop("include_dashboard")
    try:
        init_ray(address=address or None, **kwargs)
    except ConnectionError as e:
        raise TesseraError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cause(error: BaseException) -> TesseraError | None:
    """The Tessera error behind a Ray task failure (Ray wraps it, sometimes twice), if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, TesseraError) and not _is_ray_wrapper(error):
            return error
        error = getattr(error, "cause", None) or error.__cause__
    return None


def _is_ray_wrapper(error: BaseException) -> bool:
    # Ray re-raises a task's exception as a class derived from both RayTaskError and the original.
    return any(c.__module__.startswith("ray.") for c in type(error).__mro__)


@contextmanager
def tessera_errors() -> Iterator[None]:
    """Re-raise a Tessera error from inside a Ray task as itself, not as a RayTaskError traceback dump."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only Ray's wrappers of our own errors are rewritten
        if isinstance(e, TesseraError) and not _is_ray_wrapper(e):
            raise
        found = cause(e)
        if found is None:
            raise
        raise found from None
