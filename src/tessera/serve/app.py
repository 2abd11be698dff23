"""The HTTP API: predict, embed, search, feedback, generate (text, images, speech), models, health, metrics, the page.

:func:`create_app` builds a FastAPI app around loaded models (a fused
:class:`~tessera.predictor.Predictor`, an :class:`~tessera.align.Embedder`, a search
index, generators; any subset). This module is the wiring only: the state the routes share
(:mod:`tessera.serve.state`), middleware, error handlers (:mod:`tessera.serve.problems`)
and the routers (:mod:`tessera.serve.routes`). Model calls go through
:class:`~tessera.serve.batching.Batcher`, so concurrent requests share one forward pass.
Everything under ``/v1`` and ``/metrics`` needs an API key, checked before any body is read;
``/healthz``, ``/readyz``, the OpenAPI spec and the page do not (the page asks for a key and
sends it with every call). Every error is problem-details JSON. What the app cannot see (a
request still arriving, too many connections) is limited by the server it runs in
(:mod:`tessera.serve.connections`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

from fastapi import FastAPI

from tessera.serve import problems
from tessera.serve.config import ServeConfig
from tessera.serve.limits import BodySizeLimit
from tessera.serve.metrics import RequestMetrics
from tessera.serve.routes import chat, embed, feedback, generate, health, images, models, monitor, page, predict, search, speech
from tessera.serve.state import ServerState, load_models

__all__ = ["ServeConfig", "create_app", "load_models"]
ROUTERS = (health, models, monitor, predict, embed, search, feedback, generate, chat, images, speech, page)  # the order of the spec's paths


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.tessera.close()


def create_app(config: ServeConfig, *, predictor: Any = None, embedder: Any = None, searcher: Any = None,
               onnx_text: dict[str, Any] | None = None, generators: Mapping[str, Any] | None = None) -> FastAPI:
    """The app for these models. Pass loaded objects; ``tessera serve`` loads them from folders (:func:`load_models`).

    ``onnx_text``: text inputs of the embedder exported to ONNX Runtime (see :func:`load_models`).
    ``generators``: model id -> a loaded text generator, transcriber or diffusion generator.
    """
    state = ServerState.start(config, predictor, embedder, searcher, onnx_text, generators)
    app = FastAPI(
        title="Tessera",
        version="1",
        description="Multimodal prediction, embedding and search. "
        "Send `Authorization: Bearer <key>` (or `X-API-Key`) on /v1 and /metrics.",
        docs_url=None,  # Swagger UI loads from a CDN; the spec is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.tessera = state
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    # outermost: sees every response, 413s included
    app.add_middleware(RequestMetrics, metrics=state.metrics, titles=problems.TITLES)
    # The routers' routes join the app's own router: `include_router` (FastAPI 0.165) matches an
    # included router's requests through an extra layer, ~90 more Python calls a request
    # (profiled), for prefixes and per-include settings this app does not use.
    for module in ROUTERS:
        app.router.routes.extend(module.router.routes)
    app.mount("/static", page.static_files(), name="static")
    return app
