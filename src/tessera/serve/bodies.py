"""Request bodies: the JSON each route accepts (pydantic models), and how the spec documents its JSON and form bodies.

Every route reads its body itself (:mod:`tessera.serve.parsing`), after the key check, never
through a typed parameter (FastAPI reads those before any dependency runs); ``/v1/predict``,
``/v1/embed`` and ``/v1/search`` take JSON or a multipart form, ``/v1/feedback`` JSON. Their
spec entries come from :func:`body_doc`.
"""

from __future__ import annotations

from typing import Any, Literal

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


# -- generation ------------------------------------------------------------------------------------
# The OpenAI-compatible bodies take OpenAI's field names; fields OpenAI has and this server does not
# (penalties, tools, logprobs ...) are refused by name rather than silently ignored.
MAX_MESSAGES = 64
MAX_STOPS = 4


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, max_length=256, description="A text model's id (see /v1/models); default: the only one.")
    prompt: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Default: the prompt the model was trained with.")
    input: Any = Field(None, description="The image or sound the prompt is about: base64 (or a data: URL), or {'base64': ...}.")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: list[str] | None = Field(None, max_length=MAX_STOPS)
    stream: bool = False


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(
        description="Text, or parts: {type: text, text}, {type: image_url, image_url: {url: 'data:image/...;base64,...'}}, "
        "{type: input_audio, input_audio: {data: base64, format: wav | mp3}}."
    )
    name: str | None = Field(None, max_length=256)


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, description="Must be 1: one choice per request.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)


class ImagesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=1000)
    model: str | None = Field(None, max_length=256)
    n: int = Field(1, ge=1)
    size: str | None = Field(None, max_length=32, description="WIDTHxHEIGHT; only the size the model draws.")
    response_format: str | None = Field(None, description="b64_json (no URLs: nothing is stored)")
    output_format: str | None = Field(None, description="png")
    user: str | None = Field(None, max_length=256)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Tessera: the starting noise (same seed, same images).")
    guidance: float | None = Field(None, ge=0, le=50, description="Tessera: classifier-free guidance scale.")
    steps: int | None = Field(None, ge=1, description="Tessera: sampling steps.")


class SpeechBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=256)
    input: str = Field(min_length=1, max_length=1000)
    voice: str = Field(max_length=256, description="A speaker the model was trained with (see /v1/models).")
    response_format: str | None = Field(None, description="wav")
    speed: float | None = Field(None, description="1 only")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    guidance: float | None = Field(None, ge=0, le=50)
    steps: int | None = Field(None, ge=1)


GENERATE_FORM = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0},
        "stream": {"type": "boolean"},
    },
}
