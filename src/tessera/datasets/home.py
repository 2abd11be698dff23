"""Where raw sources and prepared tables live.

Raw sources (the data home) and prepared tables (the cache) are separate folders
because the data home is often shared and read-only (a lab share, ``../shared/data``),
while preparing a table must write somewhere. Frozen towers' features
(:mod:`tessera.features`) are kept in the cache too, beside the prepared tables.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """Raw sources: ``$TESSERA_DATA``, else ``~/.cache/tessera``."""
    env = os.environ.get("TESSERA_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tessera"


def cache_home() -> Path:
    """Prepared tables: ``$TESSERA_CACHE``, else ``~/.cache/tessera/prepared``."""
    env = os.environ.get("TESSERA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tessera" / "prepared"


def features_home() -> Path:
    """Frozen-feature stores (:mod:`tessera.features`): ``$TESSERA_FEATURES``, else ``features`` in the prepared-table cache."""
    env = os.environ.get("TESSERA_FEATURES")
    return Path(env).expanduser() if env else cache_home() / "features"
