"""A keys file that cannot be read fails closed: no key works, the reason is logged, and no client sees a server path."""

from __future__ import annotations

import logging
import os
import time

import pytest

from tests.serve.test_app import assert_problem


def rewrite(path, text: str) -> None:
    """Write and move the mtime on, as an editor would (the store re-reads on a new mtime)."""
    path.write_text(text)
    later = time.time_ns() + 1_000_000_000
    os.utime(path, ns=(later, later))


@pytest.mark.parametrize("broken", ['{"format": "tessera.keys/1", "salt": "ab", "keys": [{"id": ', "[]", '{"format": "other"}',
                                    '{"format": "tessera.keys/1", "salt": 3, "keys": []}'])
def test_a_corrupt_keys_file_refuses_every_key_and_logs_why(make_client, keys_file, tmp_path, caplog, broken) -> None:
    from tessera.serve.auth import KeyStore

    client, headers = make_client()
    path, key = keys_file
    store = KeyStore(path)
    _, revoked = store.add("old")
    store.revoke(store.list()[-1].id)
    good_text = path.read_text()
    assert client.get("/v1/models", headers=headers).status_code == 200
    with caplog.at_level(logging.ERROR, logger="tessera.serve"):
        rewrite(path, broken)  # a typo in a hand edit: the old key set, revoked key included, must not stay in use
        for k in (key, revoked):
            r = client.get("/v1/models", headers={"Authorization": f"Bearer {k}"})
            body = assert_problem(r, 503, "keys file is unreadable")
            assert str(tmp_path) not in r.text and "keys.json" not in r.text
        assert_problem(client.post("/v1/embed", json={"input": "text", "text": "x"}, headers=headers), 503)
    assert any("is not a Tessera keys file" in rec.getMessage() and str(path) in rec.getMessage() for rec in caplog.records)
    assert body["type"].endswith("/keys_unavailable")
    with pytest.raises(Exception, match="not a Tessera keys file"):
        KeyStore(path).add("new")  # managing it would overwrite what the operator has to fix
    rewrite(path, good_text)
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert_problem(client.get("/v1/models", headers={"Authorization": f"Bearer {revoked}"}), 401, "revoked")


def test_a_corrupt_keys_file_stops_the_server_from_starting(tmp_path) -> None:
    from tessera.errors import TesseraError
    from tessera.serve.auth import KeyStore

    (tmp_path / "keys.json").write_text("{oops")
    with pytest.raises(TesseraError, match="not a Tessera keys file"):
        KeyStore(tmp_path / "keys.json")


def test_index_errors_do_not_show_server_paths(built, make_client) -> None:
    """A filter LanceDB cannot run (a text value for a number column) is a 422 without LanceDB's source paths."""
    client, headers = make_client()
    r = client.post("/v1/search", json={"query": [{"input": "text", "text": "x"}], "filters": {"price": "cheap"}}, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert "/" not in r.json()["detail"].replace("/v1/", ""), r.text
    assert str(built.index) not in r.text
