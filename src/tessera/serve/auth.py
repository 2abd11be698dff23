"""API keys, stored only as salted hashes: a stolen keys file does not let anyone in.

A key reads ``tsk_<id>_<secret>``. The file (JSON) holds a random per-file salt and, per key,
its id, name, rate limit, creation time, whether it is revoked, and ``sha256(salt + key)``
(keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force).
The server re-reads the file when it changes, so ``tessera serve keys revoke`` takes effect
without a restart. A file that cannot be read (a typo in hand-edited JSON, a half-copied
file) fails closed: every key is refused until it is fixed, and the reason goes to the
server's log, never to a client. Keeping the old keys instead would keep a key working that
the broken edit may have meant to revoke.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tessera.errors import TesseraError
from tessera.files import atomic_write_text

PREFIX = "tsk_"
FORMAT = "tessera.keys/1"
log = logging.getLogger("tessera.serve")


@dataclass
class KeyRecord:
    id: str
    name: str
    hash: str
    created: float
    revoked: bool = False
    rate_per_minute: int | None = None  # None: the server's default


class KeyStore:
    """The keys file. ``add`` returns the only copy of the new key; ``verify`` checks one in constant time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._salt = ""
        self._records: dict[str, KeyRecord] = {}
        self.error: str | None = None  # why the file could not be read; every key is refused meanwhile
        self._reload(force=True)
        if self.error:
            raise TesseraError(self.error)

    # -- file ------------------------------------------------------------------------------
    def _reload(self, force: bool = False) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if not force and mtime == self._mtime:
            return
        salt, records, error = "", {}, None
        if mtime is not None:
            try:
                raw = json.loads(self.path.read_text())
                found = raw.get("format") if isinstance(raw, dict) else None
                if found != FORMAT:
                    raise ValueError(f"format {found!r}, expected {FORMAT!r}")
                records = {r["id"]: KeyRecord(**r) for r in raw["keys"]}
                if not isinstance(raw["salt"], str) or not all(isinstance(r.hash, str) for r in records.values()):
                    raise ValueError("salt and hashes must be strings")
                salt = raw["salt"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                salt, records, error = "", {}, f"{self.path} is not a Tessera keys file: {e}"
                if not force:
                    log.error("%s; refusing every API key until it is fixed", error)
        with self._lock:
            self._mtime, self._salt, self._records, self.error = mtime, salt, records, error

    def _readable(self) -> None:
        """Refuse to manage a file that cannot be read (saving would overwrite whatever it holds)."""
        self._reload()
        if self.error:
            raise TesseraError(self.error)

    def _save(self) -> None:
        body = {"format": FORMAT, "salt": self._salt, "keys": [asdict(r) for r in self._records.values()]}
        atomic_write_text(self.path, json.dumps(body, indent=2))
        os.chmod(self.path, 0o600)
        self._mtime = self.path.stat().st_mtime_ns

    def _hash(self, key: str) -> str:
        return hashlib.sha256((self._salt + key).encode()).hexdigest()

    # -- management ------------------------------------------------------------------------
    def add(self, name: str, rate_per_minute: int | None = None) -> tuple[KeyRecord, str]:
        """Create a key; the returned secret is shown once and never stored."""
        self._readable()
        with self._lock:
            if not self._salt:
                self._salt = secrets.token_hex(16)
            key_id = secrets.token_hex(4)
            while key_id in self._records:
                key_id = secrets.token_hex(4)
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            record = KeyRecord(id=key_id, name=name, hash=self._hash(key), created=time.time(), rate_per_minute=rate_per_minute)
            self._records[key_id] = record
            self._save()
        return record, key

    def revoke(self, key_id: str) -> KeyRecord:
        self._readable()
        with self._lock:
            if key_id not in self._records:
                raise TesseraError(f"no key with id {key_id!r} in {self.path}; ids: {sorted(self._records)}")
            self._records[key_id].revoked = True
            self._save()
            return self._records[key_id]

    def list(self) -> list[KeyRecord]:
        self._readable()
        return list(self._records.values())

    # -- checking --------------------------------------------------------------------------
    def verify(self, key: str | None) -> tuple[KeyRecord | None, str]:
        """(record, "") for a valid key, else (None, why): missing, malformed, unknown, revoked or unavailable.

        Unavailable: the file cannot be read, and every key is refused until it can.
        """
        if not key:
            return None, "missing"
        self._reload()
        if self.error:
            return None, "unavailable"
        parts = key.split("_")
        if not key.startswith(PREFIX) or len(parts) < 3:
            return None, "malformed"
        record = self._records.get(parts[1])
        if record is None or not hmac.compare_digest(record.hash, self._hash(key)):
            return None, "unknown"
        if record.revoked:
            return None, "revoked"
        return record, ""
