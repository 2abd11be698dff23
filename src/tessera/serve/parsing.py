"""Reading a request's body: JSON (checked against :mod:`tessera.serve.bodies`) or a multipart form, into checked cells.

Routes call these after their key is checked (see :mod:`tessera.serve.dependencies`), so
nothing here runs for a caller without a valid key. A value becomes a table cell through
:func:`tessera.serve.inputs.cell`, which checks it against its field's modality and meters
what its media cost to decode; the total is charged to the caller's key before the request
reaches a model. JSON is parsed by pydantic-core (Rust), which refuses what Python's own
parser lets through to fail later: nesting deeper than 200 levels (Python's overflows its
stack near 1,000), lone surrogates in strings (``"\\ud800"``, which no UTF-8 log or
database can store) and ``NaN``; every refusal is a 400.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from tessera.serve import inputs as rq
from tessera.serve.bodies import (
    MAX_QUERY_PARTS,
    ChatMessage,
    EmbedBody,
    FeedbackBody,
    GenerateBody,
    PredictBody,
    QueryPart,
    SearchBody,
)
from tessera.serve.dependencies import Authorized
from tessera.serve.limits import Meter
from tessera.serve.problems import Problem

if TYPE_CHECKING:
    from tessera.serve.generators import Served


class Part(NamedTuple):
    """One part of an embedding or search query: the field it fills, its cell, its weight in a composed query."""

    field: rq.Field
    value: Any
    weight: float


class SearchRequest(NamedTuple):
    parts: list[Part]
    k: int
    filters: dict[str, Any]
    thumbnails: bool


async def predict_cells(request: Request, caller: Authorized, fields: Mapping[str, rq.Field]) -> dict[str, Any]:
    """Column -> cell for a prediction, from JSON ``{"inputs": {...}}`` or one form field per input."""
    meter = Meter()
    if is_json(request):
        body = validate(PredictBody, await read_json(request))
        sent = [(name, value, None, True) for name, value in body.inputs.items()]
    else:
        form = await read_form(request)
        sent = []
        for name in form.keys():
            value, declared = form_value(form, name)
            if value is not None:
                sent.append((name, value, declared, False))
    cells: dict[str, Any] = {}
    for name, value, declared, from_json in sent:
        f = rq.resolve_field(name, fields, "this model")
        if f.column in cells:
            raise Problem(422, f"input {f.column!r} was sent twice (as {name!r})", kind="invalid_request")
        cells[f.column] = rq.cell(f, value, meter, name=name, declared_type=declared, from_json=from_json)
    if not cells:
        raise Problem(422, f"send at least one input; this model takes {sorted(fields)}", kind="invalid_request")
    caller.charge(meter.units)
    return cells


async def embed_part(request: Request, caller: Authorized, fields: Mapping[str, rq.Field]) -> Part:
    """The one value to embed: JSON ``{input, text | base64}`` or a form with ``input`` and ``text`` or ``file``."""
    meter = Meter()
    if is_json(request):
        part = _json_part(validate(EmbedBody, await read_json(request)), fields, meter)
        caller.charge(meter.units)
        return part
    form = await read_form(request)
    name = form_str(form, "input")
    value, declared = form_value(form, "file")
    text, _ = form_value(form, "text")
    if (value is None) == (text is None):
        raise Problem(422, "send exactly one of the fields 'text' or 'file'", kind="invalid_request")
    if value is None:
        name, value = name or "text", text
    name = name or rq.guess_modality(value)
    f = rq.resolve_field(name, fields, "this embedder")
    part = Part(f, rq.cell(f, value, meter, name=name, declared_type=declared), 1.0)
    caller.charge(meter.units)
    return part


async def search_request(request: Request, caller: Authorized, fields: Mapping[str, rq.Field]) -> SearchRequest:
    """A search: JSON (:class:`~tessera.serve.bodies.SearchBody`) or a form: ``text``, ``file`` or both, ``k``, ``filters``."""
    meter = Meter()
    if is_json(request):
        body = validate(SearchBody, await read_json(request))
        query = SearchRequest([_json_part(p, fields, meter) for p in body.query], body.k, body.filters, body.thumbnails)
        caller.charge(meter.units)
        return query
    form = await read_form(request)
    parts = []
    text, _ = form_value(form, "text")
    data, declared = form_value(form, "file")
    if isinstance(text, str) and text.strip():
        f = rq.resolve_field("text", fields, "this embedder")
        parts.append(Part(f, rq.cell(f, text, meter, name="text"), form_float(form, "text_weight", 1.0)))
    if data is not None:
        f = rq.resolve_field(rq.guess_modality(data), fields, "this embedder")
        cell = rq.cell(f, data, meter, name="file", declared_type=declared)
        parts.append(Part(f, cell, form_float(form, "file_weight", 1.0)))
    if not parts:
        raise Problem(422, "send a query: a non-empty 'text' field, a 'file', or both", kind="invalid_request")
    k = int(form_float(form, "k", 10))
    if not 1 <= k <= 100:
        raise Problem(422, "k must be between 1 and 100", kind="invalid_request")
    raw = form_str(form, "filters")
    try:
        filters = parse_json(raw, "field 'filters'") if raw else {}
    except Problem:
        raise Problem(422, "field 'filters' must be a JSON object", kind="invalid_request") from None
    if not isinstance(filters, dict):
        raise Problem(422, "field 'filters' must be a JSON object", kind="invalid_request")
    caller.charge(meter.units)
    return SearchRequest(parts, k, filters, True)


async def feedback_body(request: Request) -> FeedbackBody:
    """Feedback on an earlier request: JSON only."""
    if not is_json(request, form=False):
        raise Problem(415, "send feedback as application/json", kind="unsupported_media_type")
    return validate(FeedbackBody, await read_json(request))


def _json_part(part: EmbedBody | QueryPart, fields: Mapping[str, rq.Field], meter: Meter) -> Part:
    f = rq.resolve_field(part.input, fields, "this embedder")
    if (part.text is None) == (part.base64 is None):
        raise Problem(422, f"query part {part.input!r}: give exactly one of 'text' or 'base64'", kind="invalid_request")
    sent = part.text if part.text is not None else {"base64": part.base64}
    value = rq.cell(f, sent, meter, name=part.input, from_json=True)
    return Part(f, value, getattr(part, "weight", 1.0))


# -- generation ------------------------------------------------------------------------------------
AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}  # what OpenAI's input_audio parts may declare
MAX_CONVERSATION_CHARS = 4 * rq.MAX_TEXT_CHARS
PLURAL = {"image": "images", "audio": "audio", "video": "videos"}


class GenerateRequest(NamedTuple):
    """A ``/v1/generate`` request: the text model it asks, its fields, and its input's checked bytes (or None)."""

    served: Served
    body: GenerateBody
    media: bytes | None


async def generate_request(request: Request, caller: Authorized) -> GenerateRequest:
    """JSON (:class:`~tessera.serve.bodies.GenerateBody`) or a form with the same fields and the input as ``file``."""
    if is_json(request):
        body = validate(GenerateBody, await read_json(request))
        value, declared, name = body.input, None, "input"
    else:
        form = await read_form(request)
        fields = {n: form_str(form, n) for n in form.keys() if n != "file"}
        body = validate(GenerateBody, {n: v for n, v in fields.items() if v not in (None, "")})
        value, declared = form_value(form, "file")
        name = "file"
    served = caller.state.generators.get(body.model, "chat")
    if value is None:
        if served.modality is not None:
            raise Problem(422, f"model {served.id!r} reads {PLURAL[served.modality]}: send one as {name!r}",
                          kind="invalid_request")
        return GenerateRequest(served, body, None)
    if served.modality is None:
        raise Problem(422, f"model {served.id!r} reads text only: leave out {name!r}", kind="wrong_part_type")
    meter = Meter()
    media = media_cell(value, served, name, meter, declared)
    caller.charge(meter.units)
    return GenerateRequest(served, body, media)


def media_cell(value: Any, served: Served, name: str, meter: Meter, declared: str | None = None) -> bytes:
    """Media for a generator, checked, bounded and metered as any model input's are (:func:`tessera.serve.inputs.cell`)."""
    return rq.cell(served.field, value, meter, name=name, declared_type=declared, from_json=True)


def chat_conversation(messages: list[ChatMessage], served: Served,
                      caller: Authorized) -> tuple[list[dict[str, str]], bytes | None]:
    """OpenAI chat messages as Tessera's (``{role, content}``), and the one image or sound among their parts.

    The media's place in its message becomes the model's placeholder (``<image>``), so the
    model reads it where the client put it. ``developer`` is OpenAI's newer name for ``system``.
    What decoding the media costs is charged to the caller's key.
    """
    meter = Meter()
    out: list[dict[str, str]] = []
    media: bytes | None = None
    for i, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str):
            out.append({"role": role, "content": m.content})
            continue
        texts = []
        for j, part in enumerate(m.content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise Problem(422, f"{where}: a text part needs 'text' (a string)", kind="invalid_request", param=where)
                texts.append(part["text"])
                continue
            if kind not in ("image_url", "input_audio"):
                raise Problem(422, f"{where}: part type {kind!r} is not supported; use 'text', 'image_url' (a data: URL) "
                              "or 'input_audio'", kind="wrong_part_type", param=where)
            modality = "image" if kind == "image_url" else "audio"
            if served.modality != modality:
                reads = f"text and {PLURAL[served.modality]}" if served.modality else "text only"
                raise Problem(422, f"{where}: model {served.id!r} reads {reads}, not {PLURAL[modality]} ({kind} part)",
                              kind="wrong_part_type", param=where)
            if role != "user":
                raise Problem(422, f"{where}: only user messages may carry an {modality}", kind="invalid_request", param=where)
            if media is not None:
                raise Problem(422, f"{where}: one {modality} per request, and this is the second", kind="invalid_request",
                              param=where)
            media = (_image_part if kind == "image_url" else _audio_part)(part, where, served, meter)
            texts.append(served.placeholder)
        out.append({"role": role, "content": "\n".join(texts)})
    if sum(len(m["content"]) for m in out) > MAX_CONVERSATION_CHARS:
        raise Problem(413, f"the messages' text is over {MAX_CONVERSATION_CHARS} characters", kind="payload_too_large")
    if media is None and served.modality is not None:
        part = "an image_url" if served.modality == "image" else "an input_audio"
        raise Problem(422, f"model {served.id!r} reads {PLURAL[served.modality]}: send one as {part} part of a user message",
                      kind="invalid_request", param="messages")
    caller.charge(meter.units)
    return out, media


def _image_part(part: dict[str, Any], where: str, served: Served, meter: Meter) -> bytes:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else None
    if not isinstance(url, str):
        raise Problem(422, f"{where}: image_url must be {{'url': 'data:image/...;base64,...'}}", kind="invalid_request",
                      param=where)
    if not url.startswith("data:"):
        raise Problem(422, f"{where}: only data: URLs are accepted ('data:image/png;base64,...'); this server fetches "
                      "nothing from the network", kind="invalid_request", param=where)
    header, _, payload = url[len("data:"):].partition(",")
    if not header.endswith(";base64"):
        raise Problem(422, f"{where}: the data: URL must be base64 ('data:image/png;base64,...')", kind="invalid_request",
                      param=where)
    declared = header.removesuffix(";base64").split(";")[0] or None
    return media_cell({"base64": payload}, served, where, meter, declared)


def _audio_part(part: dict[str, Any], where: str, served: Served, meter: Meter) -> bytes:
    spec = part.get("input_audio")
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
        raise Problem(422, f"{where}: input_audio must be {{'data': base64, 'format': 'wav' or 'mp3'}}",
                      kind="invalid_request", param=where)
    fmt = spec.get("format")
    if fmt is not None and fmt not in AUDIO_FORMATS:
        raise Problem(422, f"{where}: input_audio format must be one of {sorted(AUDIO_FORMATS)}, got {fmt!r}",
                      kind="invalid_request", param=where)
    return media_cell({"base64": spec["data"]}, served, where, meter, AUDIO_FORMATS.get(fmt))


# -- the body as JSON or a form ------------------------------------------------------------------


def is_json(request: Request, form: bool = True) -> bool:
    """JSON or (where ``form``) a form, by Content-Type; anything else is a 415."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return True
    if form and ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return False
    sent = ctype or "a body without a Content-Type"
    accepted = "application/json or multipart/form-data" if form else "application/json"
    raise Problem(415, f"send {accepted}, not {sent}", kind="unsupported_media_type")


async def read_json(request: Request) -> Any:
    return parse_json(await request.body(), "the body")


def parse_json(data: bytes | str, what: str) -> Any:
    """JSON from a client, or a 400 saying what is wrong with it (see the module docstring)."""
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as e:
        surrogate = "surrogate" in str(e) or "end of hex escape" in str(e)
        hint = " (a \\uD800-\\uDFFF escape is half of a surrogate pair, not a character)" if surrogate else ""
        raise Problem(400, f"{what} is not valid JSON: {e}{hint}", kind="malformed_json") from None


def validate(model: type[BaseModel], data: Any) -> Any:
    """``data`` as ``model``, or a 422 naming the first field that is wrong (and listing all)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        errors = [{"field": ".".join(str(p) for p in x.get("loc", ())), "message": x.get("msg")} for x in e.errors()]
        raise Problem(422, f"{loc + ': ' if loc else ''}{first.get('msg', 'invalid')}", kind="invalid_request",
                      errors=errors) from None


async def read_form(request: Request) -> FormData:
    """The multipart or urlencoded form, each field at most once (a repeated one is a 422 naming it, never "last wins")."""
    form = await request.form(max_files=MAX_QUERY_PARTS, max_fields=64)
    names = [name for name, _ in form.multi_items()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise Problem(422, f"field(s) {', '.join(map(repr, dup))} sent more than once; send each field once",
                      kind="invalid_request", fields=dup)
    return form


def form_value(form: FormData, name: str) -> tuple[Any, str | None]:
    """(value, declared content type): a file's bytes, or a field's text; (None, None) when absent."""
    value = form.get(name)
    if value is None:
        return None, None
    if isinstance(value, UploadFile):
        value.file.seek(0)
        return value.file.read(), value.content_type
    return value, None


def form_str(form: FormData, name: str) -> str | None:
    value, _ = form_value(form, name)
    if value is None:
        return None
    if isinstance(value, bytes):
        raise Problem(422, f"field {name!r} must be text, not a file", kind="invalid_request")
    return value


def form_float(form: FormData, name: str, default: float) -> float:
    value = form_str(form, name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise Problem(422, f"field {name!r} must be a number, got {value[:40]!r}", kind="invalid_request") from None
    if not math.isfinite(number):
        raise Problem(422, f"field {name!r} must be finite", kind="invalid_request")
    return number
