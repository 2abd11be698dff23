"""Serving: a REST API with dynamic batching, API keys, limits, feedback, drift monitoring and a search page.

Names are resolved on first use, so ``tessera.serve.cli`` (imported by ``tessera --help``)
does not pull in FastAPI and SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app", "load_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tessera.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'tessera.serve' has no attribute {name!r}")
