"""Serving: a REST API with dynamic batching, API keys, limits, feedback, drift monitoring and a search page.

Names are resolved on first use, so ``tessera.serve.cli`` (imported by ``tessera --help``)
does not pull in FastAPI and SQLAlchemy.
"""

from tessera.lazy import lazy_exports

_EXPORTS = {"ServeConfig": "config", "create_app": "app", "load_models": "state"}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
