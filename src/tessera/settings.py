"""Settings are data, read one way: strict pydantic models whose errors name the file and the field.

Every group of settings Tessera reads (a fit or alignment config file, its ``model`` and
``train`` sections, the inference and serving settings, a saved model's JSON) is a
:class:`Settings` subclass. A wrong key or a wrong type fails when the file is read, not
mid-run, with a :class:`~tessera.errors.SchemaError` such as::

    configs/run.yaml: train.epochs: Input should be greater than or equal to 1 (got 0)
    configs/run.yaml: train: unknown key(s) ['epoch']; known: ['batch_size', 'cache', ...]

Types are strict (``"3"`` is not an int and ``true`` is not a count; an int is a float),
except that paths may be written as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from tessera.errors import SchemaError

# A path field: YAML and JSON spell paths as strings.
PathLike = Annotated[Path, BeforeValidator(lambda v: Path(v) if isinstance(v, str) else v)]
# The file being read, for messages: pydantic runs each (nested) model's __init__ while validating.
_SOURCE: ContextVar[str | None] = ContextVar("tessera_settings_source", default=None)


class Settings(BaseModel):
    """Base of every config: unknown keys refused, types checked, errors as :class:`SchemaError`.

    ``section`` is how messages name the part of a file the model reads (``train``, ``model``).
    """

    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=False)
    section: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise SchemaError(explain(e, type(self), _SOURCE.get())) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str | None = None) -> Any:
        """Validate ``data`` (None: all defaults); ``source`` (a file name) starts every error message."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            where = _where(source, cls.section, ())
            raise SchemaError(f"{where}: expected a mapping of settings, got {type(data).__name__} {data!r:.60}")
        token = _SOURCE.set(source)
        try:
            return cls(**{str(k): v for k, v in data.items()})
        finally:
            _SOURCE.reset(token)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths as strings), the form :meth:`from_dict` reads back."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> Any:
        """A validated copy with some fields changed."""
        return type(self)(**{**dict(self), **changes})


def explain(error: ValidationError, cls: type[BaseModel], source: str | None) -> str:
    """One message for all of a validation's problems: unknown keys listed with the known ones, then the rest."""
    section = getattr(cls, "section", "")
    problems = error.errors(include_url=False)
    extra: dict[tuple, list[str]] = {}
    for p in problems:
        if p["type"] == "extra_forbidden":
            extra.setdefault(tuple(p["loc"][:-1]), []).append(str(p["loc"][-1]))
    parts = []
    for loc, names in extra.items():
        model = _model_at(cls, loc)
        known = f"; known: {sorted(model.model_fields)}" if model is not None else ""
        parts.append(f"{_where(source, section, loc)}: unknown key(s) {names}{known}")
    for p in problems:
        if p["type"] == "extra_forbidden":
            continue
        message = p["msg"].removeprefix("Value error, ")
        got = "" if isinstance(p.get("input"), Mapping) or "input" not in p else f" (got {p['input']!r:.60})"
        parts.append(f"{_where(source, section, tuple(p['loc']))}: {message}{got}")
    return "; ".join(parts)


def _where(source: str | None, section: str, loc: tuple) -> str:
    path = ".".join([section, *map(str, loc)] if section else map(str, loc))
    head = source or "config"
    return f"{head}: {path}" if path else head


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The settings model found at ``loc`` inside ``cls`` (for listing its known keys)."""
    for part in loc:
        field = cls.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        cls = annotation
    return cls
