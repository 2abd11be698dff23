"""The generation routes through the official `openai` client against a real server: chat (plain and streamed, image
parts), images, speech, the models list, and clear errors; `/v1/generate`, Tessera's own, through httpx."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import serve_in_thread
from tests.generate.conftest import CAPTIONS, COLORS

openai = pytest.importorskip("openai")

MAX_BODY = 200_000


def png(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(data: bytes) -> list[dict]:
    """A user message of one image part (the tiny captioner learnt to caption an image with no prompt)."""
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(data)}}]}]


@pytest.fixture(scope="module")
def server(generators, tmp_path_factory):
    from tessera.serve import ServeConfig, create_app
    from tessera.serve.auth import KeyStore

    root = tmp_path_factory.mktemp("generation")
    _, key = KeyStore(root / "keys.json").add("tests")
    config = ServeConfig(keys_file=root / "keys.json", feedback_db=str(root / "feedback.db"), max_body_bytes=MAX_BODY,
                         max_images=3, rate_per_minute=10**6)
    with serve_in_thread(create_app(config, generators=generators)) as url:
        yield url, key, root / "feedback.db"


@pytest.fixture
def client(server):
    url, key, _ = server
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_models_lists_the_generators(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny-captioner", "tiny-lm", "tiny-images", "tiny-voice"}
    assert models["tiny-captioner"].model_extra["inputs"] == ["text", "image"]
    assert models["tiny-images"].model_extra["sizes"] == ["16x16"]
    assert models["tiny-voice"].model_extra["voices"] == ["ann", "bob"]


def test_chat_completion_reads_the_image_part(client):
    for color in ("red", "blue"):
        done = client.chat.completions.create(model="tiny-captioner", messages=image_message(png(COLORS[color])))
        assert done.choices[0].message.content == CAPTIONS[color]
        assert done.choices[0].finish_reason == "stop"
        assert done.usage.prompt_tokens > 2 and done.usage.completion_tokens >= len(CAPTIONS[color].split())
        assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_chat_completion_streams_in_chunks_that_end(client):
    messages = image_message(png(COLORS["green"]))
    stream = client.chat.completions.create(model="tiny-captioner", messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)  # the client stops at `data: [DONE]`
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 5 and "".join(pieces) == CAPTIONS["green"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_chat_options_max_tokens_stop_and_a_text_model(client):
    messages = image_message(png(COLORS["yellow"]))
    short = client.chat.completions.create(model="tiny-captioner", messages=messages, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert CAPTIONS["yellow"].startswith(short.choices[0].message.content)
    cut = client.chat.completions.create(model="tiny-captioner", messages=messages, stop=[" in"])
    assert cut.choices[0].message.content == "a yellow square" and cut.choices[0].finish_reason == "stop"
    text = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "a blue"}],
                                          max_completion_tokens=4, temperature=0.8, top_p=0.9, seed=3)
    again = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "a blue"}],
                                           max_completion_tokens=4, temperature=0.8, top_p=0.9, seed=3)
    assert text.choices[0].message.content == again.choices[0].message.content  # sampled, from the same seed
    assert text.usage.completion_tokens <= 4


def test_images_come_back_as_pngs_and_a_seed_fixes_them(client):
    from PIL import Image

    def draw(seed: int) -> list[bytes]:
        out = client.images.generate(model="tiny-images", prompt="a red square", n=2, size="16x16",
                                     response_format="b64_json", extra_body={"seed": seed, "steps": 3})
        return [base64.b64decode(d.b64_json) for d in out.data]

    first = draw(1)
    assert len(first) == 2
    for data in first:
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size == (16, 16)
    assert draw(1) == first and draw(2) != first
    assert len(client.images.generate(prompt="a red square", extra_body={"steps": 2}).data) == 1  # the only image model


def test_speech_comes_back_as_a_wav(client):
    import soundfile as sf

    from tessera.generate.speech import FRAMES, HOP

    audio = client.audio.speech.create(model="tiny-voice", voice="bob", input="seven", response_format="wav",
                                       extra_body={"steps": 3, "seed": 0})
    wave, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == 8000 and wave.ndim == 1 and abs(len(wave) - FRAMES * HOP) <= HOP
    assert np.abs(wave).max() > 0.1


def test_errors_are_openai_errors_with_clear_messages(client, server):
    url, _, _ = server
    nobody = openai.OpenAI(base_url=url + "/v1", api_key="tsk_nobody_0000", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="the API key is not valid"):
        nobody.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "hi"}])
    red = png(COLORS["red"])
    cases = [
        (dict(model="tiny-captioner", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(red).decode(), "format": "wav"}}]}]),
         r"messages\[0\]\.content\[0\]: model 'tiny-captioner' reads text and images, not audio \(input_audio part\)"),
        (dict(model="tiny-captioner", messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {}}]}]),
         r"part type 'video_url' is not supported"),
        (dict(model="tiny-lm", messages=image_message(red)), r"model 'tiny-lm' reads text only, not images"),
        (dict(model="tiny-captioner", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]), r"only data: URLs"),
        (dict(model="tiny-captioner", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(b"MZ\x90\x00 not a picture")}}]}]),
         r"expected an image file"),
        (dict(model="tiny-captioner", messages=[{"role": "user", "content": "hi"}]), r"send one as an image_url part"),
        (dict(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], n=2), r"n=2: .*n must be 1"),
        (dict(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000),
         r"max_tokens 100000 is over this server's limit of 512"),
        (dict(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=120),
         r"this LM reads at most 128 tokens"),
        (dict(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 5}),
         r"logit_bias: Extra inputs are not permitted"),
        (dict(model="tiny-images", messages=[{"role": "user", "content": "hi"}]), r"'tiny-images' is an image model, not a text model"),
    ]
    for request, message in cases:
        with pytest.raises(openai.BadRequestError, match=message) as caught:
            client.chat.completions.create(**request)
        assert caught.value.status_code == 400 and caught.value.body["message"]
    with pytest.raises(openai.NotFoundError, match=r"unknown model 'gpt-4o'; its text models are \['tiny-captioner', 'tiny-lm'\]"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    big = png((1, 2, 3), 16) + bytes(MAX_BODY)  # over the server's body limit: refused before it is read
    with pytest.raises(openai.APIStatusError, match=r"Error code: 413 - the request body is \d+ bytes or more") as caught:
        client.chat.completions.create(model="tiny-captioner", messages=image_message(big))
    assert caught.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match=r"n=4 is over this server's limit of 3 images per request"):
        client.images.generate(model="tiny-images", prompt="a cat", n=4)
    with pytest.raises(openai.BadRequestError, match=r"size '1024x1024' is not one this model draws; it draws 16x16"):
        client.images.generate(model="tiny-images", prompt="a cat", size="1024x1024")
    with pytest.raises(openai.BadRequestError, match=r"response_format 'url' is not offered"):
        client.images.generate(model="tiny-images", prompt="a cat", response_format="url")
    with pytest.raises(openai.BadRequestError, match=r"voice 'alloy' is not one of this model's speakers: \['ann', 'bob'\]"):
        client.audio.speech.create(model="tiny-voice", voice="alloy", input="seven")
    with pytest.raises(openai.BadRequestError, match=r"response_format 'mp3' is not offered; this server writes 'wav'"):
        client.audio.speech.create(model="tiny-voice", voice="ann", input="seven", response_format="mp3")


def test_tessera_generate_route_json_form_and_events(server):
    import httpx

    url, key, db = server
    headers = {"Authorization": f"Bearer {key}"}
    blue = png(COLORS["blue"])
    r = httpx.post(url + "/v1/generate", headers=headers, timeout=60,
                   json={"model": "tiny-captioner", "input": base64.b64encode(blue).decode()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == CAPTIONS["blue"] and body["finish_reason"] == "stop" and body["usage"]["prompt_tokens"] > 0
    r = httpx.post(url + "/v1/generate", headers=headers, timeout=60, data={"model": "tiny-captioner", "max_tokens": "3"},
                   files={"file": ("blue.png", blue, "image/png")})
    assert r.status_code == 200 and r.json()["finish_reason"] == "length" and r.json()["usage"]["completion_tokens"] == 3
    assert CAPTIONS["blue"].startswith(r.json()["text"]) and r.json()["text"] != CAPTIONS["blue"]
    with httpx.stream("POST", url + "/v1/generate", headers=headers, timeout=60,
                      json={"model": "tiny-captioner", "input": data_url(blue), "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: ")]
    assert "".join(e["text"] for e in events[:-1]) == CAPTIONS["blue"]
    assert events[-1]["done"] and events[-1]["text"] == CAPTIONS["blue"]
    r = httpx.post(url + "/v1/generate", headers=headers, timeout=60, json={"model": "tiny-captioner"})
    assert r.status_code == 422 and "reads images: send one as 'input'" in r.json()["detail"]
    assert "error" not in r.json()  # Tessera's own route: problem details only
    # Kept with its input, so that a correction can become a training row.
    rid = body["request_id"]
    with sqlite3.connect(db) as conn:
        route, output = conn.execute("select route, output from requests where request_id = ?", (rid,)).fetchone()
        stored = conn.execute("select data from request_inputs where request_id = ? and \"column\" = 'image'", (rid,)).fetchone()
    assert route == "generate" and json.loads(output) == CAPTIONS["blue"] and stored[0] == blue
    fixed = httpx.post(url + "/v1/feedback", headers=headers, json={"request_id": rid, "correction": "a blue tile"})
    assert fixed.status_code == 201
    wrong = httpx.post(url + "/v1/feedback", headers=headers, json={"request_id": rid, "correction": {"text": 1}})
    assert wrong.status_code == 422 and "the right reply, as a string" in wrong.json()["detail"]


def test_two_requests_wait_their_turn(server):
    """Concurrent chats on one model: each gets its own whole reply (one generation at a time per model)."""
    from concurrent.futures import ThreadPoolExecutor

    url, key, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    colors = ["red", "green", "blue", "yellow"]

    def ask(color: str) -> str:
        done = client.chat.completions.create(model="tiny-captioner", messages=image_message(png(COLORS[color])))
        return done.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, colors)) == [CAPTIONS[c] for c in colors]


def test_the_models_load_from_folders(generators):
    from tessera.generate import Generator
    from tessera.generate.diffusion import DiffusionGenerator

    assert isinstance(generators["tiny-captioner"], Generator) and generators["tiny-captioner"].modality == "image"
    assert generators["tiny-lm"].modality is None
    assert isinstance(generators["tiny-voice"], DiffusionGenerator)
    assert generators["tiny-images"].text is generators["tiny-voice"].text  # one text encoder for both
    assert Path(generators["tiny-images"].text.spec).name == "embedder"


def test_a_chat_image_is_bounded_before_decoding_and_charged_to_the_key(generators):
    """As for predictions: media over what the model's input is worth is a 413, the rest costs its decoding."""
    from tessera.serve.bodies import ChatMessage
    from tessera.serve.generators import Served
    from tessera.serve.limits import PIXELS_PER_UNIT
    from tessera.serve.parsing import chat_conversation
    from tessera.serve.problems import Problem

    charged: list[float] = []

    class Caller:
        def charge(self, units: float) -> None:
            charged.append(units)

    served = Served("tiny-captioner", "chat", generators["tiny-captioner"])
    messages = [ChatMessage.model_validate(m) for m in image_message(png(COLORS["red"], 64))]
    _, media = chat_conversation(messages, served, Caller())
    assert media is not None and charged == [pytest.approx(64 * 64 / PIXELS_PER_UNIT)]
    side = int(served.field.budget.pixels ** 0.5) + 1
    with pytest.raises(Problem, match=r"decodes to [\d,]+ pixels; this model's image input is worth at most") as caught:
        chat_conversation([ChatMessage.model_validate(m) for m in image_message(png(COLORS["red"], side))], served, Caller())
    assert caught.value.status == 413 and len(charged) == 1
