"""Request bodies: the JSON each route accepts (pydantic models), and how the spec documents its JSON and form bodies.

Every route reads its body itself (:mod:`tessera.serve.parsing`), after the key check, never
through a typed parameter (FastAPI reads those before any dependency runs); ``/v1/predict``,
``/v1/embed`` and ``/v1/search`` take JSON or a multipart form, ``/v1/feedback`` JSON. Their
spec entries come from :func:`body_doc`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tessera.serve.inputs import MAX_TEXT_CHARS

MAX_QUERY_PARTS = 8


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = Field(
        description="Column, input name or modality -> value: text, a number, a category, or base64 media ({'base64': ...})."
    )


class EmbedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = Field(description="An input name of the embedder or a modality (text, image, audio).", max_length=256)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    base64: str | None = Field(None, description="Media bytes, base64-encoded.")


class QueryPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = Field(max_length=256)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    base64: str | None = None
    weight: float = Field(1.0, ge=-10, le=10)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: list[QueryPart] = Field(
        min_length=1, max_length=MAX_QUERY_PARTS, description="Several parts make a composed query."
    )
    k: int = Field(10, ge=1, le=100)
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="Metadata column -> value, list of values, or {gt, gte, lt, lte: number}.",
    )
    thumbnails: bool = True


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    item_id: str | None = Field(None, max_length=256, description="The search result the feedback is about.")
    prediction: Any = None
    correction: Any = Field(None, description="The right answer (e.g. the true label).")
    rating: int | None = Field(None, ge=-5, le=5, description="1 like, -1 dislike (or a -5..5 scale).")
    comment: str | None = Field(None, max_length=2000)


PREDICT_FORM = {"type": "object", "additionalProperties": {"type": "string", "format": "binary"},
                "description": "One field per input: a file for media, a string for text, numbers and categories."}
EMBED_FORM = {
    "type": "object",
    "properties": {"input": {"type": "string"}, "text": {"type": "string"}, "file": {"type": "string", "format": "binary"}},
}
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


def body_doc(model: type[BaseModel], multipart: dict | None = None) -> dict:
    """``openapi_extra`` for a route that takes ``model`` as JSON (or ``multipart`` as a form)."""
    content: dict[str, Any] = {"application/json": {"schema": _inline(model.model_json_schema())}}
    if multipart is not None:
        content["multipart/form-data"] = {"schema": multipart}
    return {"requestBody": {"required": True, "content": content}}


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
