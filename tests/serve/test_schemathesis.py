"""Property-based requests generated from the app's own OpenAPI spec: no input may make the server fail (500)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402


@pytest.fixture(scope="module")
def served_app(loaded, tmp_path_factory):
    from tessera.serve import ServeConfig, create_app
    from tessera.serve.auth import KeyStore

    root = tmp_path_factory.mktemp("schemathesis")
    _, key = KeyStore(root / "keys.json").add("fuzz")
    app = create_app(ServeConfig(keys_file=root / "keys.json", feedback_db=str(root / "feedback.db"), rate_per_minute=10**9),
                     **loaded)
    return app, key


@pytest.mark.slow
def test_no_server_errors_on_generated_requests(served_app) -> None:
    """Every operation in the spec, 25 generated cases each (schemathesis' pytest plugin does not run on pytest 9, so hypothesis drives it)."""
    from hypothesis import given

    app, key = served_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def check(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
            if response.status_code >= 400:
                ctype = response.headers.get("content-type")
                ctype = ctype[0] if isinstance(ctype, list) else ctype
                assert ctype.startswith("application/problem+json"), response.text[:200]

        check()
    assert len(seen) == len(operations), seen
