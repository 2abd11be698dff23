"""The HTTP API: predict, embed, search, feedback, models, health, metrics, and the search page.

:func:`create_app` builds a FastAPI app around loaded models (a fused
:class:`~tessera.predictor.Predictor`, an :class:`~tessera.align.Embedder`, a search
index; any subset). Model calls go through :class:`~tessera.serve.batching.Batcher`, so
concurrent requests share one forward pass. Everything under ``/v1`` and ``/metrics`` needs
an API key; ``/healthz``, ``/readyz``, the OpenAPI spec and the page do not (the page asks
for a key and sends it with every call). Every error is problem-details JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic_core import to_json
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field as PydField, ValidationError
from starlette.datastructures import UploadFile

from tessera.media import sniff_mime
from tessera.settings import PathLike, Settings
from tessera.preprocess import media_modality_of
from tessera.serve import inputs as rq
from tessera.serve import problems
from tessera.serve.auth import KeyRecord, KeyStore
from tessera.serve.batching import Batcher
from tessera.serve.feedback import FeedbackStore
from tessera.serve.limits import BodySizeLimit, RateLimiter
from tessera.serve.metrics import Metrics, RequestMetrics
from tessera.serve.monitoring import REFERENCE_SAMPLE, DriftMonitor
from tessera.serve.problems import Problem
from tessera.serve.workers import InProcess, ModelCalls, WorkerProcesses, plain_value

log = logging.getLogger("tessera.serve")
PAGE = Path(__file__).parent / "page"
MAX_QUERY_PARTS = 8
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ServeConfig(Settings):
    """Server settings; the CLI flags of ``tessera serve`` map onto these one to one."""

    section: ClassVar[str] = "serve"
    keys_file: PathLike
    feedback_db: str = "tessera-feedback.db"
    max_body_bytes: int = 10 * 1024 * 1024
    rate_per_minute: int = 1200  # per key, unless the key sets its own
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 10.0  # waited only under concurrency (see Batcher)
    cors_origins: list[str] = []  # empty: CORS off
    log_requests: bool = True  # keep predict/search inputs so feedback can become training data
    # Threads per model call (per worker process when model_processes > 0); None leaves torch's
    # setting. The CLI gives cores / processes, or cores - 1 in-process: on a busy 2-core machine two
    # OpenMP threads spin against each other and the HTTP side (a short text took 1 s, not 45 ms).
    torch_threads: int | None = None
    # 0: models run in this process, on the batchers' threads. N: N worker processes, each with a
    # copy of the models (N x the memory), so model calls never wait on the event loop's GIL.
    model_processes: int = 0


# -- request bodies (JSON) ---------------------------------------------------------------------


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = PydField(
        description="Column, input name or modality -> value: text, a number, a category, or base64 media ({'base64': ...})."
    )


class EmbedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = PydField(description="An input name of the embedder or a modality (text, image, audio).", max_length=256)
    text: str | None = PydField(None, max_length=rq.MAX_TEXT_CHARS)
    base64: str | None = PydField(None, description="Media bytes, base64-encoded.")


class QueryPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = PydField(max_length=256)
    text: str | None = PydField(None, max_length=rq.MAX_TEXT_CHARS)
    base64: str | None = None
    weight: float = PydField(1.0, ge=-10, le=10)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: list[QueryPart] = PydField(min_length=1, max_length=MAX_QUERY_PARTS, description="Several parts make a composed query.")
    k: int = PydField(10, ge=1, le=100)
    filters: dict[str, Any] = PydField(
        default_factory=dict,
        description="Metadata column -> value, list of values, or {gt, gte, lt, lte: number}.",
    )
    thumbnails: bool = True


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = PydField(min_length=1, max_length=64)
    item_id: str | None = PydField(None, max_length=256, description="The search result the feedback is about.")
    prediction: Any = None
    correction: Any = PydField(None, description="The right answer (e.g. the true label).")
    rating: int | None = PydField(None, ge=-5, le=5, description="1 like, -1 dislike (or a -5..5 scale).")
    comment: str | None = PydField(None, max_length=2000)


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` inlined, for openapi_extra (which has no local $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.split("/")[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _body_doc(model: type[BaseModel], multipart: dict) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline(model.model_json_schema())},
                "multipart/form-data": {"schema": multipart},
            },
        }
    }


PREDICT_FORM = {"type": "object", "additionalProperties": {"type": "string", "format": "binary"},
                "description": "One field per input: a file for media, a string for text, numbers and categories."}
EMBED_FORM = {"type": "object", "properties": {"input": {"type": "string"}, "text": {"type": "string"}, "file": {"type": "string", "format": "binary"}}}
SEARCH_FORM = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "file": {"type": "string", "format": "binary"},
        "k": {"type": "integer", "minimum": 1, "maximum": 100},
        "filters": {"type": "string", "description": "JSON object, as in the JSON body"},
        "text_weight": {"type": "number"},
        "file_weight": {"type": "number"},
    },
}


# -- the models behind the routes --------------------------------------------------------------


class Served:
    """Loaded models, where their calls run, their batchers, and what requests may send to each."""

    def __init__(self, config: ServeConfig, metrics: Metrics, predictor: Any = None, embedder: Any = None, searcher: Any = None,
                 onnx_text: dict[str, Any] | None = None) -> None:
        self.predictor, self.searcher, self.onnx_text = predictor, searcher, onnx_text or {}
        self.embedder = embedder if embedder is not None else (searcher.embedder if searcher is not None else None)
        max_batch = config.max_batch if config.batching else 1
        wait = config.max_wait_ms if config.batching else 0.0
        for m in self.onnx_text.values():
            m.threads = config.torch_threads or 1
        calls = ModelCalls(predictor, self.embedder, self.onnx_text)
        self.runner = WorkerProcesses(calls, config.model_processes, config.torch_threads) if config.model_processes else InProcess(calls)
        threads = max(1, self.runner.processes)  # one batch in flight per worker process
        self.predict_batcher = self.embed_batcher = None
        if predictor is not None:
            self.predict_fields = rq.fields_of(predictor.pipeline.preprocessors)
            self.predict_batcher = Batcher(partial(self.runner.call, "predict"), max_batch=max_batch, max_wait_ms=wait, name="predictor",
                                           on_batch=metrics.on_batch, workers=threads)
        if self.embedder is not None:
            self.embed_fields = rq.fields_of(self.embedder.pipeline.preprocessors)
            self.embed_batcher = Batcher(partial(self.runner.call, "embed"), max_batch=max_batch, max_wait_ms=wait, name="embedder",
                                         on_batch=metrics.on_batch, workers=threads)

    @property
    def alive(self) -> bool:
        return self.runner.alive and all(b.alive for b in (self.predict_batcher, self.embed_batcher) if b is not None)

    def close(self) -> None:
        for b in (self.predict_batcher, self.embed_batcher):
            if b is not None:
                b.close()
        self.runner.close()


def _reference_vectors(searcher: Any) -> dict[str, np.ndarray]:
    """Per modality, a sample of the collection's own vectors: the indexed input from the index, other inputs embedded from its table."""
    if searcher is None:
        return {}
    out: dict[str, np.ndarray] = {}
    ids = searcher.index.ids()
    rng = random.Random(0)
    indexed = searcher.info.get("modality")
    if ids and indexed:
        sample = rng.sample(ids, min(REFERENCE_SAMPLE, len(ids)))
        out[indexed] = np.stack(searcher.index.get(sample, columns=["vector"])["vector"].to_list()).astype(np.float32)
    table = searcher.info.get("table")
    others = {n: m for n, m in searcher.embedder.inputs.items() if m not in out}
    if table and others:
        try:
            from tessera.table import Table, read_table

            t = read_table(table)
            frame = t.frame.sample(n=min(REFERENCE_SAMPLE, len(t.frame)), random_state=0)
            for name, modality in others.items():
                if all(c in frame.columns for c in searcher.embedder.pipeline.preprocessors[name].columns):
                    parts = [v for _, v in searcher.embedder.embed_table(Table(frame, t.base_dir, t.source), name, on_error="skip")]
                    if parts:
                        out[modality] = np.concatenate(parts)
        except Exception as e:  # noqa: BLE001 - drift of these inputs is then reported without a reference
            log.warning("no drift reference from %s: %s", table, e)
    return out


def _json_response(payload: dict[str, Any]) -> Response:
    """A JSON response serialised by pydantic-core in Rust.

    FastAPI's default path (pydantic validation of the return value, then ``json.dumps``) took
    ~0.5 ms for one 384-float vector, on the event loop, holding the GIL the model thread needs;
    this takes ~0.03 ms. The routes still declare their response model for the OpenAPI spec.
    """
    return Response(to_json(payload), media_type="application/json")


# -- the app -----------------------------------------------------------------------------------


def create_app(config: ServeConfig, *, predictor: Any = None, embedder: Any = None, searcher: Any = None,
               onnx_text: dict[str, Any] | None = None) -> FastAPI:
    """The app for these models. Pass loaded objects; ``tessera serve`` loads them from folders.

    ``onnx_text``: text inputs of the embedder exported to ONNX Runtime (see :func:`load_models`).
    """
    if predictor is None and embedder is None and searcher is None:
        from tessera.errors import TesseraError

        raise TesseraError("nothing to serve: give a model (--model), an index (--index) or an embedder (--embedder)")
    if config.torch_threads is not None:
        import torch

        torch.set_num_threads(max(1, config.torch_threads))
    keys = KeyStore(config.keys_file)
    limiter = RateLimiter()
    monitor = DriftMonitor(predictor.pipeline if predictor is not None else None, _reference_vectors(searcher))
    metrics = Metrics(monitor)
    served = Served(config, metrics, predictor, embedder, searcher, onnx_text)
    store = FeedbackStore(config.feedback_db)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-feedback")  # one writer: FIFO, no lock contention

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        served.close()
        writer.shutdown(wait=True)

    app = FastAPI(
        title="Tessera",
        version="1",
        description="Multimodal prediction, embedding and search. Send `Authorization: Bearer <key>` (or `X-API-Key`) on /v1 and /metrics.",
        docs_url=None,  # Swagger UI loads from a CDN; the spec is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.served, app.state.store, app.state.monitor, app.state.metrics, app.state.keys = served, store, monitor, metrics, keys
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"], allow_headers=["Authorization", "X-API-Key", "Content-Type"])

    app.add_middleware(RequestMetrics, metrics=metrics, titles=problems.TITLES)  # outermost: sees every response, 413s included

    bearer = HTTPBearer(auto_error=False, description="An API key from `tessera serve keys add`.")
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(  # async: a sync dependency would cost every request a thread-pool hop
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        api_key: str | None = Depends(header_key),
    ) -> KeyRecord:
        key = credentials.credentials if credentials is not None else api_key
        record, why = keys.verify(key)
        if record is None:
            detail = {
                "missing": "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                "malformed": "the API key is malformed (keys look like tsk_<id>_<secret>)",
                "unknown": "the API key is not valid",
                "revoked": "the API key has been revoked",
            }[why]
            raise Problem(401, detail, kind=f"auth_{why}", headers={"WWW-Authenticate": "Bearer"})
        allowed, wait = limiter.allow(record.id, record.rate_per_minute or config.rate_per_minute)
        if not allowed:
            raise Problem(429, f"rate limit of {record.rate_per_minute or config.rate_per_minute} requests per minute exceeded; retry in {wait:.1f} s",
                          kind="rate_limited", headers={"Retry-After": str(max(1, round(wait)))})
        request.state.key_id = record.id
        return record

    async def log_request(request_id: str, route: str, key: KeyRecord, cells: dict[str, Any], output: Any, target: list[str] | None = None) -> None:
        if config.log_requests:
            await asyncio.get_running_loop().run_in_executor(writer, store.log_request, request_id, route, key.id, cells, output, target)

    # -- health ------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Readiness: models loaded and their batch workers alive."""
        ready = served.alive
        return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus(_key: KeyRecord = Depends(require_key)) -> Response:
        """Prometheus metrics: requests, latencies, inference time, batch sizes, errors by kind, drift."""
        return Response(await run_in_threadpool(metrics.render), media_type="text/plain; version=0.0.4")

    # -- models --------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["models"])
    async def models(_key: KeyRecord = Depends(require_key)) -> dict[str, Any]:
        """What this server serves, and which fields each route accepts."""
        out: dict[str, Any] = {}
        if served.predictor is not None:
            target = served.predictor.pipeline.target
            out["predictor"] = {
                "task": target.task,
                "target": target.columns,
                "classes": [plain_value(c) for c in target.classes] if getattr(target, "classes", None) is not None else None,
                "inputs": {n: p.modality for n, p in served.predictor.pipeline.preprocessors.items()},
                "fields": {name: f.modality for name, f in served.predict_fields.items()},
            }
        if served.embedder is not None:
            out["embedder"] = {"inputs": served.embedder.inputs, "dim": served.embedder.dim,
                               "onnx_runtime_inputs": sorted(served.onnx_text)}
        if served.searcher is not None:
            idx = served.searcher.index
            out["index"] = {
                "rows": len(idx),
                "modality": served.searcher.info.get("modality"),
                "filters": [c for c in idx.metadata_columns if c not in ("thumbnail", "path")],
            }
        out["batching"] = {"enabled": config.batching, "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms}
        return out

    @app.get("/v1/monitor", tags=["models"])
    async def monitor_summary(_key: KeyRecord = Depends(require_key)) -> dict[str, Any]:
        """Drift of incoming data against training data (what `tessera monitor` prints)."""
        return await run_in_threadpool(monitor.summary)

    # -- predict ---------------------------------------------------------------------------------
    @app.post("/v1/predict", tags=["predict"], response_model=dict[str, Any], openapi_extra=_body_doc(PredictBody, PREDICT_FORM))
    async def predict(request: Request, key: KeyRecord = Depends(require_key)) -> Response:
        """Predict from one example: multipart (a field per input) or JSON with base64 media."""
        if served.predict_batcher is None:
            raise Problem(404, "this server has no prediction model (start it with --model)", kind="no_model")
        cells: dict[str, Any] = {}
        for name, value, declared, from_json in await _fields(request, PredictBody, lambda b: [(k, v) for k, v in b.inputs.items()]):
            f = rq.resolve_field(name, served.predict_fields, "this model")
            if f.column in cells:
                raise Problem(422, f"input {f.column!r} was sent twice (as {name!r})", kind="invalid_request")
            cells[f.column] = rq.cell(f, value, name=name, declared_type=declared, from_json=from_json)
        if not cells:
            raise Problem(422, f"send at least one input; this model takes {sorted(served.predict_fields)}", kind="invalid_request")
        result = await served.predict_batcher.submit(cells)
        monitor.observe_row(cells)
        rid = request.state.request_id
        await log_request(rid, "predict", key, cells, result, served.predictor.pipeline.target.columns)
        return _json_response({"request_id": rid, **result})

    # -- embed -----------------------------------------------------------------------------------
    @app.post("/v1/embed", tags=["embed"], response_model=dict[str, Any], openapi_extra=_body_doc(EmbedBody, EMBED_FORM))
    async def embed(request: Request, _key: KeyRecord = Depends(require_key)) -> Response:
        """One value of any input into the shared space: JSON {input, text | base64} or multipart (input, text | file)."""
        if served.embed_batcher is None:
            raise Problem(404, "this server has no embedder (start it with --index or --embedder)", kind="no_model")
        parts = await _query_parts(request, EmbedBody, single=True)
        f, value, _ = parts[0]
        vector = await served.embed_batcher.submit((f.input, value))
        monitor.observe_vectors(f.modality, vector[None])
        return _json_response({"request_id": request.state.request_id, "input": f.input, "modality": f.modality, "dim": int(vector.shape[0]), "vector": vector.tolist()})

    # -- search ----------------------------------------------------------------------------------
    @app.post("/v1/search", tags=["search"], response_model=dict[str, Any], openapi_extra=_body_doc(SearchBody, SEARCH_FORM))
    async def search(request: Request, key: KeyRecord = Depends(require_key)) -> Response:
        """Top-k items for a query of any modality, or several parts weighted (a composed query), with metadata filters."""
        if served.searcher is None:
            raise Problem(404, "this server has no search index (start it with --index)", kind="no_model")
        parts, k, filters, thumbs = await _search_request(request)
        vectors = await asyncio.gather(*(served.embed_batcher.submit((f.input, v)) for f, v, _ in parts))
        for (f, _, _), vec in zip(parts, vectors):
            monitor.observe_vectors(f.modality, vec[None])
        from tessera.align.embedder import compose

        try:
            query = compose(list(vectors), [w for _, _, w in parts])
        except Exception as e:  # noqa: BLE001 - e.g. parts that cancel out
            raise Problem(422, str(e), kind="invalid_query") from None
        where = _where(filters, served.searcher.index.metadata_columns)
        hits = await run_in_threadpool(_search_hits, served.searcher, query, k, where, thumbs)
        rid = request.state.request_id
        cells = {f"{f.input}#{i}": v for i, (f, v, _) in enumerate(parts)}
        await log_request(rid, "search", key, cells, {"ids": [h["id"] for h in hits], "filters": filters})
        return _json_response({"request_id": rid, "results": hits})

    @app.get("/v1/items/{item_id}/media", tags=["search"], response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}}, 404: {"description": "no such item or no media"}})
    async def item_media(item_id: str, _key: KeyRecord = Depends(require_key)) -> Response:
        """The media file of an indexed item (for the page's audio players); found by id in the index, never by a client path."""
        if served.searcher is None:
            raise Problem(404, "this server has no search index", kind="no_model")
        path = await run_in_threadpool(_item_file, served.searcher, item_id)
        data = await run_in_threadpool(path.read_bytes)  # whole: indexed media are single images and clips
        return Response(data, media_type=sniff_mime(data) or "application/octet-stream")

    # -- feedback --------------------------------------------------------------------------------
    @app.post("/v1/feedback", tags=["feedback"], status_code=201)
    async def feedback(body: FeedbackBody, key: KeyRecord = Depends(require_key)) -> dict[str, Any]:
        """A correction or rating for an earlier prediction or search result (by its request id)."""
        if body.correction is None and body.rating is None:
            raise Problem(422, "feedback needs a correction or a rating", kind="invalid_request")
        try:
            fid = await asyncio.get_running_loop().run_in_executor(
                writer, lambda: store.add(body.request_id, key.id, item_id=body.item_id, prediction=body.prediction,
                                          correction=body.correction, rating=body.rating, comment=body.comment))
        except KeyError:
            raise Problem(404, f"no prediction or search with request id {body.request_id!r} is on record", kind="unknown_request") from None
        return {"feedback_id": fid, "request_id": body.request_id}

    # -- the page --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        csp = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; frame-ancestors 'none'"
        return HTMLResponse((PAGE / "index.html").read_text(), headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    # -- request parsing (closures: they need the served models) ----------------------------------
    async def _query_parts(request: Request, model: type[BaseModel], single: bool) -> list[tuple[rq.Field, Any, float]]:
        if _is_json(request):
            body = _validate(model, await _json(request))
            parts = [body] if single else body.query
            out = []
            for p in parts:
                f = rq.resolve_field(p.input, served.embed_fields, "this embedder")
                if (p.text is None) == (p.base64 is None):
                    raise Problem(422, f"query part {p.input!r}: give exactly one of 'text' or 'base64'", kind="invalid_request")
                value = rq.cell(f, p.text if p.text is not None else {"base64": p.base64}, name=p.input, from_json=True)
                out.append((f, value, getattr(p, "weight", 1.0)))
            return out
        form = await _form(request)
        name = _form_str(form, "input")
        value, declared = _form_value(form, "file")
        text, _ = _form_value(form, "text")
        if (value is None) == (text is None):
            raise Problem(422, "send exactly one of the fields 'text' or 'file'", kind="invalid_request")
        if value is None:
            name, value = name or "text", text
        name = name or _guess_modality(value)
        f = rq.resolve_field(name, served.embed_fields, "this embedder")
        return [(f, rq.cell(f, value, name=name, declared_type=declared), 1.0)]

    async def _search_request(request: Request) -> tuple[list[tuple[rq.Field, Any, float]], int, dict, bool]:
        if _is_json(request):
            body = _validate(SearchBody, await _json(request))
            return await _query_parts(request, SearchBody, single=False), body.k, body.filters, body.thumbnails
        form = await _form(request)
        parts = []
        text, _ = _form_value(form, "text")
        data, declared = _form_value(form, "file")
        if isinstance(text, str) and text.strip():
            f = rq.resolve_field("text", served.embed_fields, "this embedder")
            parts.append((f, rq.cell(f, text, name="text"), _form_float(form, "text_weight", 1.0)))
        if data is not None:
            name = _guess_modality(data)
            f = rq.resolve_field(name, served.embed_fields, "this embedder")
            parts.append((f, rq.cell(f, data, name="file", declared_type=declared), _form_float(form, "file_weight", 1.0)))
        if not parts:
            raise Problem(422, "send a query: a non-empty 'text' field, a 'file', or both", kind="invalid_request")
        k = int(_form_float(form, "k", 10))
        if not 1 <= k <= 100:
            raise Problem(422, "k must be between 1 and 100", kind="invalid_request")
        raw = _form_str(form, "filters")
        try:
            filters = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise Problem(422, "field 'filters' must be a JSON object", kind="invalid_request") from None
        if not isinstance(filters, dict):
            raise Problem(422, "field 'filters' must be a JSON object", kind="invalid_request")
        return parts, k, filters, True

    return app


# -- request helpers ---------------------------------------------------------------------------


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return True
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return False
    raise Problem(415, f"send application/json or multipart/form-data, not {ctype or 'a body without a Content-Type'}", kind="unsupported_media_type")


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Problem(400, f"the body is not valid JSON: {e}", kind="malformed_json") from None


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise Problem(422, f"{loc + ': ' if loc else ''}{first.get('msg', 'invalid')}", kind="invalid_request",
                      errors=[{"field": ".".join(str(p) for p in x.get("loc", ())), "message": x.get("msg")} for x in e.errors()]) from None


async def _form(request: Request):
    form = await request.form(max_files=MAX_QUERY_PARTS, max_fields=64)
    names = list(form.keys())
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise Problem(422, f"field(s) {sorted(dup)} sent more than once", kind="invalid_request")
    return form


async def _fields(request: Request, model: type[BaseModel], from_body) -> list[tuple[str, Any, str | None, bool]]:
    """(name, value, declared content type, came from JSON) for every field of a predict request."""
    if _is_json(request):
        body = _validate(model, await _json(request))
        return [(k, v, None, True) for k, v in from_body(body)]
    form = await _form(request)
    out = []
    for name in form.keys():
        value, declared = _form_value(form, name)
        if value is not None:
            out.append((name, value, declared, False))
    return out


def _form_value(form, name: str) -> tuple[Any, str | None]:
    value = form.get(name)
    if value is None:
        return None, None
    if isinstance(value, UploadFile):
        value.file.seek(0)
        return value.file.read(), value.content_type
    return value, None


def _form_str(form, name: str) -> str | None:
    value, _ = _form_value(form, name)
    if value is None:
        return None
    if isinstance(value, bytes):
        raise Problem(422, f"field {name!r} must be text, not a file", kind="invalid_request")
    return value


def _form_float(form, name: str, default: float) -> float:
    value = _form_str(form, name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise Problem(422, f"field {name!r} must be a number, got {value[:40]!r}", kind="invalid_request") from None
    if not np.isfinite(number):
        raise Problem(422, f"field {name!r} must be finite", kind="invalid_request")
    return number


def _guess_modality(value: Any) -> str:
    """The modality of uploaded bytes by their content (the form does not always say)."""
    if not isinstance(value, bytes):
        return "text"
    mime = sniff_mime(value) or ""
    modality = media_modality_of(mime)
    if modality is not None:
        return modality
    raise Problem(415, f"the uploaded file {'looks like ' + mime if mime else 'is not a recognised image, sound or video'}", kind="wrong_media_type")


def _sql_literal(value: Any, column: str) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if not np.isfinite(value):
            raise Problem(422, f"filter {column!r}: numbers must be finite", kind="invalid_filter")
        return repr(value)
    if isinstance(value, str):
        if len(value) > 1000:
            raise Problem(422, f"filter {column!r}: value too long", kind="invalid_filter")
        return "'" + value.replace("'", "''") + "'"
    raise Problem(422, f"filter {column!r}: values must be strings, numbers or booleans", kind="invalid_filter")


def _where(filters: dict[str, Any], columns: list[str]) -> str | None:
    """A LanceDB filter from structured filters; column names are checked, values quoted, so no SQL comes from a client."""
    allowed = [c for c in columns if c not in ("thumbnail", "path")]
    clauses = []
    for column, cond in filters.items():
        if column not in allowed:
            raise Problem(422, f"cannot filter on {column!r}; filterable columns: {allowed}", kind="invalid_filter")
        col = column if IDENT.match(column) else "`" + column.replace("`", "") + "`"
        if isinstance(cond, list):
            if not cond:
                raise Problem(422, f"filter {column!r}: the list of values is empty", kind="invalid_filter")
            clauses.append(f"{col} IN ({', '.join(_sql_literal(v, column) for v in cond[:1000])})")
        elif isinstance(cond, dict):
            ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "ne": "!="}
            bad = set(cond) - set(ops)
            if bad or not cond:
                raise Problem(422, f"filter {column!r}: use the operators {sorted(ops)}", kind="invalid_filter")
            clauses.extend(f"{col} {ops[op]} {_sql_literal(v, column)}" for op, v in cond.items())
        else:
            clauses.append(f"{col} = {_sql_literal(cond, column)}")
    return " AND ".join(clauses) or None


def _search_hits(searcher: Any, query: np.ndarray, k: int, where: str | None, thumbnails: bool) -> list[dict[str, Any]]:
    index = searcher.index
    columns = [c for c in index.metadata_columns if c != "thumbnail"]
    frame = index.search(query, k=k, filter=where, columns=columns)
    thumbs: dict[str, Any] = {}
    if thumbnails and "thumbnail" in index.metadata_columns and len(frame):
        got = index.get(frame["id"].tolist(), columns=["thumbnail"])
        thumbs = dict(zip(got["id"], got["thumbnail"]))
    hits = []
    for row in frame.to_dict("records"):
        meta = {c: _json_value(row[c]) for c in columns if c != "path" and c in row}
        hit = {"id": row["id"], "score": float(row["score"]), "rank": int(row["rank"]), "metadata": meta}
        if thumbs.get(row["id"]) is not None:
            hit["thumbnail"] = "data:image/jpeg;base64," + base64.b64encode(thumbs[row["id"]]).decode()
        if row.get("path"):
            hit["media_url"] = f"/v1/items/{row['id']}/media"
        hits.append(hit)
    return hits


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, bytes):
        return None
    return v


def _item_file(searcher: Any, item_id: str) -> Path:
    """The media file behind an indexed item: its path comes from the index, and must lie inside the indexed table's folder."""
    if "path" not in searcher.index.metadata_columns:
        raise Problem(404, "this index stores no media paths", kind="not_found")
    got = searcher.index.get([item_id], columns=["path"])
    if not len(got) or not got["path"].iloc[0]:
        raise Problem(404, f"no item {item_id!r} with a media file in the index", kind="not_found")
    base = searcher.info.get("base_dir")
    if not base:
        raise Problem(404, "the index does not record where its media files are", kind="not_found")
    root = Path(base).resolve()
    path = (root / got["path"].iloc[0]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Problem(404, f"the media file of item {item_id!r} is not available", kind="not_found")
    return path


def load_models(
    model: str | os.PathLike | None,
    index: str | os.PathLike | None,
    embedder: str | os.PathLike | None,
    *,
    quantize: bool = False,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Load what the CLI names: a predictor folder, an index (with its recorded embedder), an embedder folder.

    ``quantize`` swaps every model's Linear layers for int8 ones (:mod:`tessera.quantize`):
    faster on CPU, slightly different outputs. ``runtime="onnx"`` also exports the embedder's
    sentence-transformers text inputs to ONNX Runtime (int8 weights with ``quantize``), returned
    as ``onnx_text`` for :func:`create_app`; other inputs and the predictor stay in torch.
    """
    if runtime not in ("torch", "onnx"):
        from tessera.errors import TesseraError

        raise TesseraError(f"runtime must be 'torch' or 'onnx', got {runtime!r}")
    out: dict[str, Any] = {}
    if model is not None:
        from tessera.predictor import Predictor

        out["predictor"] = Predictor.load(model)
    if embedder is not None:
        from tessera.align.embedder import Embedder

        out["embedder"] = Embedder.load(embedder)
    if index is not None:
        from tessera.index.search import Searcher

        out["searcher"] = Searcher.open(index, out.get("embedder"))
    if runtime == "onnx":
        from tessera.onnx_text import onnx_text_inputs

        source = out.get("embedder") or getattr(out.get("searcher"), "embedder", None)
        out["onnx_text"] = onnx_text_inputs(source, quantize=quantize) if source is not None else {}
        if not out["onnx_text"]:
            log.warning("--runtime onnx: no sentence-transformers text input to export; everything runs in torch")
    if quantize:
        from tessera.quantize import quantize_int8

        holders = [out.get("predictor"), out.get("embedder"), getattr(out.get("searcher"), "embedder", None)]
        for holder in {id(h): h for h in holders if h is not None}.values():
            holder.model = quantize_int8(holder.model)
    return out
