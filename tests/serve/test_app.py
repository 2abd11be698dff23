"""The API end to end in-process: every route, and every kind of bad request gets a clear 4xx while the server keeps serving."""

from __future__ import annotations

import base64

import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_bytes(built, i: int = 0) -> bytes:
    return (built.table.parent / f"img/{i}.png").read_bytes()


def wav_bytes(built, i: int = 0) -> bytes:
    return (built.table.parent / f"aud/{i}.wav").read_bytes()


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for w in words:
        assert w in body["detail"], body
    return body


def still_serving(client, headers) -> None:
    r = client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
    assert r.status_code == 200, r.text


def test_health_needs_no_key_and_models_describe_what_is_served(make_client) -> None:
    client, headers = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    models = client.get("/v1/models", headers=headers).json()
    assert models["predictor"]["task"] == "multiclass" and models["predictor"]["classes"] == [0, 1, 2, 3]
    assert {"image", "audio", "caption", "price", "color"} <= set(models["predictor"]["fields"])
    assert models["embedder"]["inputs"] == {"image": "image", "caption": "text"}
    assert models["index"]["rows"] == 48 and "color" in models["index"]["filters"]
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/embed", "/v1/search", "/v1/feedback", "/v1/models", "/metrics"} <= set(spec["paths"])


def test_auth_missing_wrong_malformed_and_revoked_keys(make_client, keys_file) -> None:
    from tessera.serve.auth import KeyStore

    client, headers = make_client()
    assert_problem(client.get("/v1/models"), 401, "needs an API key")
    assert_problem(client.get("/v1/models", headers={"Authorization": "Bearer nonsense"}), 401, "malformed")
    good = headers["Authorization"].split()[1]
    wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    r = client.get("/v1/models", headers={"X-API-Key": wrong})
    assert_problem(r, 401, "not valid")
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/models", headers={"X-API-Key": good}).status_code == 200  # the other header works too
    store = KeyStore(keys_file[0])
    assert all(good not in open(keys_file[0]).read() for _ in [0])  # only hashes at rest
    store.revoke(store.list()[0].id)
    assert_problem(client.get("/v1/models", headers=headers), 401, "revoked")
    assert_problem(client.get("/metrics", headers=headers), 401)
    assert client.get("/healthz").status_code == 200


def test_rate_limit_per_key(built, make_client, keys_file) -> None:
    from tessera.serve.auth import KeyStore

    client, headers = make_client()
    _, slow_key = KeyStore(keys_file[0]).add("slow", rate_per_minute=2)
    slow = {"X-API-Key": slow_key}
    assert [client.get("/v1/models", headers=slow).status_code for _ in range(2)] == [200, 200]
    r = client.get("/v1/models", headers=slow)
    assert_problem(r, 429, "rate limit")
    assert int(r.headers["retry-after"]) >= 1
    assert client.get("/v1/models", headers=headers).status_code == 200  # other keys are unaffected


def test_predict_multipart_and_json_agree(built, make_client) -> None:
    client, headers = make_client()
    files = {"image": ("x.png", image_bytes(built, 1), "image/png"), "audio": ("x.wav", wav_bytes(built, 1), "audio/wav")}
    data = {"caption": "a blue square", "price": "0.5", "color": "x"}
    r = client.post("/v1/predict", files=files, data=data, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["label"] in [0, 1, 2, 3] and abs(sum(out["probabilities"].values()) - 1) < 1e-5 and out["request_id"]
    body = {"inputs": {"image": {"base64": base64.b64encode(image_bytes(built, 1)).decode()},
                       "audio": base64.b64encode(wav_bytes(built, 1)).decode(), "caption": "a blue square", "price": 0.5, "color": "x"}}
    r2 = client.post("/v1/predict", json=body, headers=headers)
    assert r2.status_code == 200, r2.text
    assert r2.json()["probabilities"] == pytest.approx(out["probabilities"], abs=1e-5)
    only_text = client.post("/v1/predict", json={"inputs": {"caption": "a red square"}}, headers=headers)
    assert only_text.status_code == 200, only_text.text  # missing modalities are allowed


def test_embed_text_and_image(built, make_client) -> None:
    from tessera.align import Embedder

    client, headers = make_client()
    r = client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
    assert r.status_code == 200, r.text
    vec = np.array(r.json()["vector"], dtype=np.float32)
    direct = Embedder.load(built.embedder).embed("caption", ["a red square"])[0]
    np.testing.assert_allclose(vec, direct, atol=1e-5)
    r = client.post("/v1/embed", files={"file": ("a.png", image_bytes(built), "image/png")}, headers=headers)
    assert r.status_code == 200 and r.json()["modality"] == "image" and r.json()["dim"] == 16
    for empty in ({"json": {"input": "text", "text": " "}}, {"data": {"text": ""}}):  # one vector per value: none for nothing
        assert_problem(client.post("/v1/embed", headers=headers, **empty), 422, "missing or empty: there is nothing to embed")


def test_search_text_image_composed_and_filtered(built, make_client) -> None:
    client, headers = make_client()
    r = client.post("/v1/search", json={"query": [{"input": "text", "text": "a red square"}], "k": 5}, headers=headers)
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["thumbnail"].startswith("data:image/jpeg;base64,") and "path" not in hits[0]["metadata"]
    r = client.post("/v1/search", files={"file": ("q.png", image_bytes(built, 3), "image/png")}, data={"k": "3", "filters": '{"color": "x"}'}, headers=headers)
    assert r.status_code == 200, r.text
    assert all(h["metadata"]["color"] == "x" for h in r.json()["results"])
    composed = {"query": [{"input": "text", "text": "a red square"}, {"input": "image", "base64": base64.b64encode(image_bytes(built)).decode(), "weight": 0.5}],
                "k": 4, "filters": {"price": {"gte": -10}, "color": ["x", "y"]}}
    r = client.post("/v1/search", json=composed, headers=headers)
    assert r.status_code == 200 and len(r.json()["results"]) == 4
    assert_problem(client.post("/v1/search", json={"query": [{"input": "text", "text": "x"}], "filters": {"nope; DROP": 1}}, headers=headers), 422, "cannot filter")
    injected = client.post("/v1/search", json={"query": [{"input": "text", "text": "x"}], "filters": {"color": "x' OR 1=1 --"}}, headers=headers)
    assert injected.status_code == 200 and injected.json()["results"] == []  # the quote is data, not SQL


def test_item_media_is_found_by_id_never_by_path(built, make_client) -> None:
    client, headers = make_client()
    r = client.get("/v1/items/3/media", headers=headers)
    assert r.status_code == 200 and r.content == image_bytes(built, 3) and r.headers["content-type"] == "image/png"
    assert_problem(client.get("/v1/items/..%2F..%2Fetc%2Fpasswd/media", headers=headers), 404)
    assert_problem(client.get("/v1/items/9999/media", headers=headers), 404)


@pytest.mark.parametrize(
    "kind",
    ["too_large", "malformed_multipart", "corrupt_image", "renamed_executable", "unknown_modality", "text_as_image",
     "bad_json", "wrong_content_type", "bad_base64", "not_a_number", "empty"],
)
def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving(built, make_client, kind) -> None:
    client, headers = make_client(max_body_bytes=200_000)
    png = image_bytes(built)
    if kind == "too_large":
        r = client.post("/v1/predict", files={"image": ("big.png", png + b"\0" * 300_000, "image/png")}, headers=headers)
        assert_problem(r, 413, "at most 200000 bytes")
    elif kind == "malformed_multipart":
        r = client.post("/v1/predict", content=b"--XYZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                        headers={**headers, "Content-Type": "multipart/form-data; boundary=XYZ"})
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/problem+json"), r.text
    elif kind == "corrupt_image":
        r = client.post("/v1/predict", files={"image": ("c.png", png[:60], "image/png")}, headers=headers)  # a PNG header, then garbage
        assert_problem(r, 422, "image")
    elif kind == "renamed_executable":
        exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\0" * 200
        r = client.post("/v1/predict", files={"image": ("cat.png", exe, "image/png")}, headers=headers)
        assert_problem(r, 415, "expected an image")
    elif kind == "unknown_modality":
        assert_problem(client.post("/v1/predict", data={"smell": "roses"}, headers=headers), 422, "unknown input or modality 'smell'")
        assert_problem(client.post("/v1/embed", json={"input": "smell", "text": "roses"}, headers=headers), 422, "'smell'")
    elif kind == "text_as_image":
        r = client.post("/v1/predict", data={"image": "/etc/passwd"}, headers=headers)  # a path as text never reaches the filesystem
        assert_problem(r, 422, "file upload")
    elif kind == "bad_json":
        assert_problem(client.post("/v1/predict", content=b"{nope", headers={**headers, "Content-Type": "application/json"}), 400, "not valid JSON")
    elif kind == "wrong_content_type":
        assert_problem(client.post("/v1/predict", content=b"hello", headers={**headers, "Content-Type": "text/plain"}), 415, "multipart/form-data")
    elif kind == "bad_base64":
        assert_problem(client.post("/v1/predict", json={"inputs": {"image": {"base64": "@@@"}}}, headers=headers), 422, "base64")
    elif kind == "not_a_number":
        assert_problem(client.post("/v1/predict", json={"inputs": {"price": "cheap"}}, headers=headers), 422, "expected a number")
    elif kind == "empty":
        assert_problem(client.post("/v1/predict", json={"inputs": {}}, headers=headers), 422, "at least one input")
    still_serving(client, headers)
    assert client.post("/v1/predict", files={"image": ("ok.png", png, "image/png")}, headers=headers).status_code == 200


def test_metrics_count_requests_batches_and_errors(built, make_client) -> None:
    client, headers = make_client()
    client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
    client.post("/v1/embed", json={"input": "smell", "text": "x"}, headers=headers)
    client.post("/v1/predict", json={"inputs": {"caption": "a red square", "price": 3.0}}, headers=headers)
    client.post("/v1/embed", files={"file": ("a.png", image_bytes(built), "image/png")}, headers=headers)
    text = client.get("/metrics", headers=headers).text
    assert 'tessera_requests_total{method="POST",route="/v1/embed",status="200"} 2.0' in text
    assert 'tessera_errors_total{kind="unknown_input"} 1.0' in text
    assert 'tessera_batch_size_count{model="embedder"}' in text and 'tessera_inference_seconds_count{model="predictor"}' in text
    assert 'tessera_request_seconds_bucket{le="0.1",route="/v1/embed"}' in text
    assert 'tessera_drift_missing_rate{input="image"} 1.0' in text and "tessera_drift_numeric_shift_sd" in text
    assert 'tessera_drift_embedding_mmd2{modality="text"}' in text and 'tessera_drift_embedding_mmd2{modality="image"}' in text
    drift = client.get("/v1/monitor", headers=headers).json()
    assert drift["prediction_rows"] == 1 and drift["missing_rate"]["image"] == 1.0 and drift["missing_rate"]["caption"] == 0.0
    assert drift["numeric"]["price"]["mean"] == 3.0 and drift["embeddings"]["image"]["reference_n"] == 48


def test_feedback_is_stored_with_its_request(built, make_client, tmp_path) -> None:
    from tessera.serve.feedback import FeedbackStore

    client, headers = make_client()
    pred = client.post("/v1/predict", files={"image": ("x.png", image_bytes(built, 2), "image/png")}, data={"caption": "a red square"}, headers=headers).json()
    r = client.post("/v1/feedback", json={"request_id": pred["request_id"], "prediction": pred["label"], "correction": 2}, headers=headers)
    assert r.status_code == 201, r.text
    search = client.post("/v1/search", json={"query": [{"input": "text", "text": "a red square"}], "k": 2}, headers=headers).json()
    hit = search["results"][0]["id"]
    assert client.post("/v1/feedback", json={"request_id": search["request_id"], "item_id": hit, "rating": -1}, headers=headers).status_code == 201
    assert_problem(client.post("/v1/feedback", json={"request_id": "nope", "rating": 1}, headers=headers), 404, "no prediction or search")
    assert_problem(client.post("/v1/feedback", json={"request_id": pred["request_id"]}, headers=headers), 422, "correction or a rating")
    rows = FeedbackStore(tmp_path / "feedback.db").feedback()
    assert sorted(rows["route"]) == ["predict", "search"]
    assert rows.set_index("route").loc["search", "item_id"] == hit


def test_cors_is_off_by_default(make_client) -> None:
    client, headers = make_client()
    r = client.options("/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
