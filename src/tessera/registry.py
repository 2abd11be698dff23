"""Checking config options against a component's constructor, shared by every registry.

Components (preprocessors, encoders, fusions) are created by name from YAML; a typo in
an option name should fail at build time, listing what would have been accepted.
"""

from __future__ import annotations

import inspect
from typing import Any

from tessera.errors import SchemaError


def check_options(cls: type, options: dict[str, Any], *, what: str, supplied: tuple[str, ...] = ()) -> None:
    """Raise SchemaError for unknown or missing constructor options.

    ``supplied`` names constructor parameters the factory fills in itself (e.g. ``columns``).
    """
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self" and k not in supplied}
    known = list(params)
    unknown = [k for k in options if k not in params]
    if unknown:
        raise SchemaError(f"unknown option(s) {unknown} for {what}; known options: {known}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in options]
    if missing:
        raise SchemaError(f"{what} needs option(s) {missing}; known options: {known}")
