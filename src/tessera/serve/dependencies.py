"""What a route receives from FastAPI: the server's state, with the caller's key checked and rate-limited.

Every ``/v1`` route and ``/metrics`` takes a :data:`Caller`: the key is checked before the
route runs, and the route reaches the server's state through it (one dependency, so a
request pays for one). Routes read their body themselves (:mod:`tessera.serve.parsing`),
after this check, and never declare it as a parameter: FastAPI reads a body *parameter*
before it runs any dependency, so a caller without a key could make the server read and
parse 10 MB (``tests/serve/test_limits.py`` checks every route for it). What the body's
media cost to decode is then charged to the key (:meth:`Authorized.charge`).
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tessera.serve.auth import KeyRecord
from tessera.serve.problems import Problem
from tessera.serve.state import ServerState

bearer = HTTPBearer(auto_error=False, description="An API key from `tessera serve keys add`.")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False)
WHY = {
    "missing": "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
    "malformed": "the API key is malformed (keys look like tsk_<id>_<secret>)",
    "unknown": "the API key is not valid",
    "revoked": "the API key has been revoked",
}
UNAVAILABLE = "the server cannot check API keys right now (its keys file is unreadable; the reason is in its log)"


class Authorized(NamedTuple):
    """A request whose key passed: the key's record, and the state of the server it reached."""

    key: KeyRecord
    state: ServerState

    def charge(self, units: float) -> None:
        """Take a parsed request's media cost from the key's rate limit: 429 if the key is already in debt."""
        if units <= 0:
            return
        rate = self.key.rate_per_minute or self.state.config.rate_per_minute
        taken, wait = self.state.limiter.take(self.key.id, rate, units, need=0.0)
        if not taken:
            raise _rate_limited(rate, wait)


def _rate_limited(rate: int, wait: float) -> Problem:
    return Problem(429, f"rate limit of {rate} units per minute exceeded (a request is one unit, its media add their "
                   f"decoding cost); retry in {wait:.1f} s", kind="rate_limited",
                   headers={"Retry-After": str(max(1, round(wait)))})


async def get_state(request: Request) -> ServerState:
    # async, like every dependency here: a sync one would cost each request a thread-pool hop
    return request.app.state.tessera


async def require_key(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    api_key: str | None = Depends(header_key),
) -> Authorized:
    """The caller's key checked against this server's keys: 401 without a valid one, 429 over its rate limit.

    503 while the keys file cannot be read (every key is refused; see :mod:`tessera.serve.auth`).
    """
    state: ServerState = request.app.state.tessera
    key = credentials.credentials if credentials is not None else api_key
    record, why = state.keys.verify(key)
    if record is None:
        if why == "unavailable":
            raise Problem(503, UNAVAILABLE, kind="keys_unavailable", headers={"Retry-After": "30"})
        raise Problem(401, WHY[why], kind=f"auth_{why}", headers={"WWW-Authenticate": "Bearer"})
    rate = record.rate_per_minute or state.config.rate_per_minute
    allowed, wait = state.limiter.allow(record.id, rate)
    if not allowed:
        raise _rate_limited(rate, wait)
    request.state.key_id = record.id
    return Authorized(record, state)


State = Annotated[ServerState, Depends(get_state)]  # for routes without a key (readiness)
Caller = Annotated[Authorized, Depends(require_key)]
