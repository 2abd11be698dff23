"""Serving: a REST API with dynamic batching, API keys, limits, feedback, drift monitoring and a search page."""

from tessera.serve.app import ServeConfig, create_app, load_models

__all__ = ["ServeConfig", "create_app", "load_models"]
