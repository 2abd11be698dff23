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


def fuzz(app, key: str, models: dict[str, str] | None = None, examples: int = 25) -> dict[str, set[int]]:
    """Every operation of the app's spec (or, given ``models``, those paths), ``examples`` generated cases each: never a 500.

    ``models`` maps a path to a loaded model id that replaces a generated body's ``model``, so
    the cases get past the model lookup (a 404) to the model. schemathesis' pytest plugin does
    not run on pytest 9, so hypothesis drives it.
    """
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [o for o in operations if models is None or o.path in models]
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case) -> None:
            if models and isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = models[case.path]
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
            if response.status_code >= 400:
                ctype = response.headers.get("content-type")
                ctype = ctype[0] if isinstance(ctype, list) else ctype
                assert ctype.startswith("application/problem+json"), response.text[:200]

        check()
    assert len(seen) == len(operations), seen
    return seen


@pytest.mark.slow
def test_no_server_errors_on_generated_requests(served_app) -> None:
    app, key = served_app
    assert len(fuzz(app, key)) >= 9


@pytest.mark.slow
def test_no_server_errors_on_generated_generation_requests(generators, tmp_path_factory) -> None:
    """The generation routes with tiny generators loaded (so requests reach the models), at small caps."""
    from tessera.serve import ServeConfig, create_app
    from tessera.serve.auth import KeyStore

    root = tmp_path_factory.mktemp("schemathesis-generation")
    _, key = KeyStore(root / "keys.json").add("fuzz")
    config = ServeConfig(keys_file=root / "keys.json", feedback_db=str(root / "feedback.db"), rate_per_minute=10**9,
                         max_new_tokens=8, max_images=2, max_sampling_steps=2)
    app = create_app(config, generators=generators)
    models = {"/v1/generate": "tiny-lm", "/v1/chat/completions": "tiny-captioner",
              "/v1/images/generations": "tiny-images", "/v1/audio/speech": "tiny-voice"}
    seen = fuzz(app, key, models, examples=30)
    assert len(seen) == 4 and all(codes - {404} for codes in seen.values()), seen  # each route got past the lookup
