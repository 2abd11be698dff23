"""From request fields to table cells a model can decode, refusing anything that is not what it claims.

A request names what it sends by the model's table column (``caption``) or input name, or
by modality where the model has one input of it (``image``). Media arrive as bytes (an
uploaded file, or base64 in JSON) and are sniffed by their content, not their name or
declared type: a renamed executable is refused as "not an image" before any decoder sees
it. Their header then says what decoding them would take (pixels, audio samples), which
must fit what the model's input is worth decoding (its preprocessor's
:meth:`~tessera.preprocess.base.Preprocessor.decode_budget`; a 300 KB PNG can claim 88 M
pixels): over it, a 413 before any decoder runs; under it, the cost goes on the request's
:class:`~tessera.serve.limits.Meter`, which the key's rate limit is charged. Media cells are
always bytes, never strings, so no request value can be read as a file path.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from tessera.errors import DataError
from tessera.media import sniff_mime
from tessera.preprocess import DecodeCost, Preprocessor, media_modalities, media_modality_of, preprocessor_class
from tessera.serve.limits import Meter
from tessera.serve.problems import Problem

MAX_TEXT_CHARS = 20_000
PLAIN = ("text", "numeric", "categorical")  # the non-media modalities a request can carry (parsed in `cell`)


@dataclass(frozen=True)
class Field:
    """One column a request may fill: the model input it feeds, the kind of value it holds, (media) its decoder."""

    column: str
    input: str
    modality: str
    pre: Preprocessor | None = dataclasses.field(default=None, compare=False, repr=False)
    budget: DecodeCost = DecodeCost()  # the most a cell of it is worth decoding

    @classmethod
    def of(cls, column: str, name: str, pre: Preprocessor) -> "Field":
        return cls(column, name, pre.modality, pre, pre.decode_budget())


def fields_of(preprocessors: Mapping[str, Any]) -> dict[str, Field]:
    """Request field names a model accepts: its columns, single-column input names, and unambiguous modalities."""
    out: dict[str, Field] = {}
    by_modality: dict[str, list[Field]] = {}
    for name, pre in preprocessors.items():
        for column in pre.columns:
            f = Field.of(column, name, pre)
            out[column] = f
            by_modality.setdefault(pre.modality, []).append(f)
        if len(pre.columns) == 1:
            out.setdefault(name, Field.of(pre.columns[0], name, pre))
    for modality, fs in by_modality.items():
        if len(fs) == 1:
            out.setdefault(modality, fs[0])
    return out


def resolve_field(name: str, fields: Mapping[str, Field], what: str = "this model") -> Field:
    if name in fields:
        return fields[name]
    raise Problem(
        422,
        f"unknown input or modality {name!r}; {what} takes {sorted(fields)}",
        kind="unknown_input",
    )


def sniff(data: bytes, modality: str, field: str, declared: str | None = None) -> None:
    """Refuse media whose bytes are not of the field's modality (415), whatever the file is called."""
    if not data:
        raise Problem(422, f"field {field!r}: the {modality} is empty", kind="empty_media")
    accepted = preprocessor_class(modality).mime_types  # what that modality's decoders open
    mime = sniff_mime(data)
    if mime is None or not mime.startswith(accepted):
        found = f"looks like {mime}" if mime else "is not a recognised media file"
        raise Problem(415, f"field {field!r}: expected an {modality} file, but the content {found}", kind="wrong_media_type")
    if declared and declared not in ("application/octet-stream",) and not declared.startswith(accepted):
        raise Problem(415, f"field {field!r}: declared as {declared}, which is not an {modality} type", kind="wrong_media_type")


def bound(f: Field, data: bytes, name: str, meter: Meter) -> None:
    """Refuse media whose header promises more decoding than the model's input is worth (413); meter the rest."""
    try:
        cost = f.pre.decode_cost(data) if f.pre is not None else DecodeCost()
    except DataError as e:
        raise Problem(422, f"field {name!r}: {e.reason}", kind="unreadable_media") from None
    over = cost.over(f.budget)
    if over:
        m = over[0]
        raise Problem(413, f"field {name!r}: {cost.what} decodes to {getattr(cost, m):,} {m}; this model's "
                      f"{f.modality} input is worth at most {getattr(f.budget, m):,} (send it smaller)",
                      kind="media_too_large")
    meter.add(cost)


def media_from_base64(value: Any, field: str) -> bytes:
    text = value.get("base64") if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise Problem(422, f"field {field!r}: media in JSON must be a base64 string or {{\"base64\": ...}}", kind="invalid_request")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(422, f"field {field!r}: not valid base64", kind="invalid_request") from None


def cell(field: Field, value: Any, meter: Meter, *, name: str, declared_type: str | None = None,
         from_json: bool = False) -> Any:
    """The table cell for one request value, checked for its modality; what decoding it costs goes on ``meter``."""
    m = field.modality
    if m in media_modalities():
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif from_json:
            data = media_from_base64(value, name)
        else:
            raise Problem(422, f"field {name!r}: send the {m} as a file upload, not as text", kind="invalid_request")
        sniff(data, m, name, declared_type)
        bound(field, data, name, meter)
        return data
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(422, f"field {name!r}: a {m} value must be UTF-8 text, not a binary file", kind="invalid_request") from None
    if m == "text":
        if not isinstance(value, str):
            raise Problem(422, f"field {name!r}: text must be a string", kind="invalid_request")
        if len(value) > MAX_TEXT_CHARS:
            raise Problem(413, f"field {name!r}: text is {len(value)} characters; at most {MAX_TEXT_CHARS}", kind="payload_too_large")
        return utf8(value, name)
    if m == "numeric":
        if isinstance(value, bool):
            raise Problem(422, f"field {name!r}: expected a number, got a boolean", kind="invalid_request")
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise Problem(422, f"field {name!r}: the number is too large", kind="invalid_request") from None
        except (TypeError, ValueError):
            raise Problem(422, f"field {name!r}: expected a number, got {str(value)[:40]!r}", kind="invalid_request") from None
        if not math.isfinite(number):
            raise Problem(422, f"field {name!r}: the number must be finite", kind="invalid_request")
        return number
    if m == "categorical":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise Problem(422, f"field {name!r}: expected a category (string)", kind="invalid_request")
        if isinstance(value, int):
            if abs(value) >= 2**63:
                raise Problem(422, f"field {name!r}: the category is a number too large to be one",
                              kind="invalid_request")
            return str(value)
        if len(value) > MAX_TEXT_CHARS:
            raise Problem(413, f"field {name!r}: the category is {len(value)} characters; at most {MAX_TEXT_CHARS}",
                          kind="payload_too_large")
        return utf8(value, name)
    raise Problem(422, f"field {name!r}: {m} inputs cannot be sent to this server (it serves {[*media_modalities(), *PLAIN]})", kind="unknown_modality")


def utf8(text: str, name: str) -> str:
    """``text`` if it can be stored and logged as UTF-8: a lone surrogate (JSON's ``"\\ud800"``) cannot."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Problem(422, f"field {name!r}: not valid Unicode text ({e.reason} at character {e.start})",
                          kind="invalid_request") from None
    return text


def guess_modality(value: Any) -> str:
    """The modality of an uploaded value by its content, for form fields that do not say which input they fill."""
    if not isinstance(value, bytes):
        return "text"
    mime = sniff_mime(value) or ""
    modality = media_modality_of(mime)
    if modality is not None:
        return modality
    raise Problem(415, f"the uploaded file {'looks like ' + mime if mime else 'is not a recognised image, sound or video'}", kind="wrong_media_type")
