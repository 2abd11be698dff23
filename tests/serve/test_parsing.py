"""Malformed bodies get 4xx problem details, never a 500, and the server keeps serving; a repeated form field is refused."""

from __future__ import annotations

import pytest

from tests.serve.test_app import assert_problem, image_bytes, still_serving

HUGE = "1" + "0" * 400  # a number with 401 digits: an int Python can hold and no float can
NESTED = '{"inputs": {"caption": ' + "[" * 5000 + "]" * 5000 + "}}"


@pytest.mark.parametrize(
    ("route", "body", "status", "words"),
    [
        ("/v1/predict", NESTED, 400, "recursion limit"),
        ("/v1/search", '{"query": [{"input": "text", "text": "x"}], "filters": {"color": ' + "[" * 3000 + "]" * 3000 + "}}",
         400, "recursion limit"),
        ("/v1/predict", '{"inputs": {"caption": ' + "[" * 150 + "]" * 150 + "}}", 422, "text must be a string"),
        ("/v1/predict", '{"inputs": {"price": ' + HUGE + "}}", 422, "too large"),
        ("/v1/predict", '{"inputs": {"price": 1e400}}', 422, "finite"),
        ("/v1/predict", '{"inputs": {"price": ' + "9" * 5000 + "}}", 400, "not valid JSON"),
        ("/v1/predict", '{"inputs": {"price": NaN}}', 400, "not valid JSON"),
        ("/v1/predict", '{"inputs": {"color": ' + HUGE + "}}", 422, "too large"),
        ("/v1/predict", '{"inputs": {"color": "\\ud800"}}', 400, "surrogate"),
        ("/v1/predict", '{"inputs": {"caption": "ok \\udfff"}}', 400, "surrogate"),
        ("/v1/embed", '{"input": "text", "text": "\\ud83d"}', 400, "not valid JSON"),
        ("/v1/search", '{"query": [{"input": "text", "text": "x"}], "filters": {"price": {"gt": ' + HUGE + "}}}", 422, "out of range"),
        ("/v1/search", '{"query": [{"input": "text", "text": "x"}], "filters": {"price": {"gt": 1e999}}}', 422, "finite"),
        ("/v1/search", '{"query": [{"input": "text", "text": "x"}], "filters": {"color": "\\ud800"}}', 400, "surrogate"),
        ("/v1/search", '{"query": [{"input": "text", "text": "x"}], "k": ' + HUGE + "}", 422, "k"),
        ("/v1/feedback", '{"request_id": "x", "rating": ' + HUGE + "}", 422, "rating"),
        ("/v1/feedback", '{"request_id": "x", "rating": 1, "comment": "\\ud800"}', 400, "surrogate"),
    ],
)
def test_malformed_json_is_a_4xx(make_client, route, body, status, words) -> None:
    client, headers = make_client()
    r = client.post(route, content=body.encode(), headers={**headers, "Content-Type": "application/json"})
    assert_problem(r, status, words)
    still_serving(client, headers)


def test_malformed_form_values_are_a_4xx(make_client) -> None:
    client, headers = make_client()
    assert_problem(client.post("/v1/predict", data={"price": HUGE}, headers=headers), 422, "finite")
    surrogate = "--x\r\nContent-Disposition: form-data; name=\"color\"\r\n\r\n".encode() + b"\xed\xa0\x80" + b"\r\n--x--\r\n"
    r = client.post("/v1/predict", content=surrogate, headers={**headers, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 200, r.text  # Starlette decodes form text with replacement: U+FFFD, which logs and stores fine
    assert_problem(client.post("/v1/search", data={"text": "x", "filters": "[" * 3000}, headers=headers), 422, "filters")
    assert_problem(client.post("/v1/search", data={"text": "x", "k": HUGE}, headers=headers), 422, "'k'")
    still_serving(client, headers)


def test_a_repeated_form_field_is_refused_by_name(built, make_client) -> None:
    client, headers = make_client()
    png = image_bytes(built)
    files = [("image", ("a.png", png, "image/png")), ("image", ("b.png", image_bytes(built, 1), "image/png"))]
    assert_problem(client.post("/v1/predict", files=files, headers=headers), 422, "'image'", "more than once")
    r = client.post("/v1/predict", data={"caption": ["a red square", "a blue square"]}, headers=headers)
    assert_problem(r, 422, "'caption'", "more than once")
    r = client.post("/v1/embed", files=[("file", ("a.png", png, "image/png"))], data={"text": ["a", "b"]}, headers=headers)
    assert_problem(r, 422, "'text'")
    r = client.post("/v1/search", data={"text": "a red square", "k": ["1", "100"]}, headers=headers)
    assert_problem(r, 422, "'k'")
    assert client.post("/v1/predict", files=[files[0]], headers=headers).status_code == 200
