"""``/v1/search``: top-k items for a query of any modality or a weighted mix, with metadata filters; the items' media."""

from __future__ import annotations

import asyncio
import base64
import math
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tessera.align.embedder import compose
from tessera.media import sniff_mime
from tessera.serve.bodies import SEARCH_FORM, SearchBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.parsing import search_request
from tessera.serve.problems import Problem
from tessera.serve.routes import json_response

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=dict[str, Any], openapi_extra=body_doc(SearchBody, SEARCH_FORM))
async def search(request: Request, caller: Caller) -> Response:
    """Top-k items for a query of any modality, or several parts weighted (a composed query), with metadata filters."""
    key, state = caller
    models = state.models
    if models.searcher is None:
        raise Problem(404, "this server has no search index (start it with --index)", kind="no_model")
    query = await search_request(request, caller, models.embed_fields)
    vectors = await asyncio.gather(*(models.embed_batcher.submit((p.field.input, p.value)) for p in query.parts))
    for p, vec in zip(query.parts, vectors):
        state.monitor.observe_vectors(p.field.modality, vec[None])
    try:
        vector = compose(list(vectors), [p.weight for p in query.parts])
    except Exception as e:  # noqa: BLE001 - e.g. parts that cancel out
        raise Problem(422, str(e), kind="invalid_query") from None
    # The filters go to the index as the client sent them: the index checks and quotes them (tessera.index.filters).
    hits = await run_in_threadpool(_hits, models.searcher, vector, query.k, query.filters, query.thumbnails)
    rid = request.state.request_id
    named = {f"{p.field.input}#{i}": p for i, p in enumerate(query.parts)}
    cells, fields = {k: p.value for k, p in named.items()}, {k: p.field for k, p in named.items()}
    output = {"ids": [h["id"] for h in hits], "filters": query.filters}
    await state.log_request(rid, "search", key.id, cells, output, fields)
    return json_response({"request_id": rid, "results": hits})


@router.get("/v1/items/{item_id}/media", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       404: {"description": "no such item or no media"}})
async def item_media(item_id: str, caller: Caller) -> Response:
    """The media file of an indexed item (for the page's audio players); found by id in the index, never by a client path."""  # noqa: E501 - the spec's text
    searcher = caller.state.models.searcher
    if searcher is None:
        raise Problem(404, "this server has no search index", kind="no_model")
    path = await run_in_threadpool(_item_file, searcher, item_id)
    data = await run_in_threadpool(path.read_bytes)  # whole: indexed media are single images and clips
    return Response(data, media_type=sniff_mime(data) or "application/octet-stream")


def _hits(searcher: Any, query: np.ndarray, k: int, filters: dict[str, Any], thumbnails: bool) -> list[dict[str, Any]]:
    """The top ``k`` rows as JSON-ready hits: metadata (never the media path), a thumbnail, a media URL."""
    index = searcher.index
    columns = [c for c in index.metadata_columns if c != "thumbnail"]
    frame = index.search(query, k=k, filter=filters, columns=columns)
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
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return None
    return v


def _item_file(searcher: Any, item_id: str) -> Path:
    """The media file behind an indexed item: its path comes from the index and must lie inside the table's folder."""
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
