"""The openai_compatible backend against Tessera's own chat endpoint, started here: it captions a table's images like a
Generator, caches on disk, paces itself, retries a 429, counts tokens and cost, streams, and transcribes."""

from __future__ import annotations

import json

import pytest

from tessera.errors import SchemaError, TesseraError
from tests.conftest import serve_in_thread
from tests.generate.conftest import fit_captioner

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
KEY_ENV = "TESSERA_TEST_OPENAI_KEY"


@pytest.fixture(scope="module")
def server(tiny_gpt2, caption_table, tmp_path_factory):
    """A server with the tiny captioner, the tiny LM and (when packaged) Whisper: (url, store of keys)."""
    from tessera import zoo
    from tessera.generate import Generator
    from tessera.generate.transcriber import NAME, Transcriber
    from tessera.serve import ServeConfig, create_app
    from tessera.serve.auth import KeyStore

    frame, folder = caption_table
    generators = {"captioner": fit_captioner(tiny_gpt2, frame, folder), "lm": Generator.from_lm(tiny_gpt2)}
    if zoo.is_installed("transcribe"):
        generators[NAME] = Transcriber(beam_size=1)
    root = tmp_path_factory.mktemp("openai-backend")
    keys = KeyStore(root / "keys.json")
    config = ServeConfig(keys_file=root / "keys.json", feedback_db=str(root / "feedback.db"), log_requests=False)
    with serve_in_thread(create_app(config, generators=generators)) as url:
        yield url, keys


@pytest.fixture
def backend(server, tmp_path, monkeypatch):
    """make(**config) -> an OpenAICompatible pointed at the server with a fresh key and its own cache."""
    from tessera.generate.openai_backend import OpenAICompatible

    url, keys = server

    def make(rate_per_minute: int | None = None, **config):
        _, key = keys.add("backend", rate_per_minute=rate_per_minute)
        monkeypatch.setenv(KEY_ENV, key)
        settings = {"base_url": url + "/v1", "model": "captioner", "api_key_env": KEY_ENV, "prompt": "",
                    "cache_dir": str(tmp_path / "cache"), "max_retries": 2} | config
        return OpenAICompatible(settings), key

    return make


def test_captions_a_table_like_a_generator_and_counts_the_cost(backend, caption_table):
    frame, folder = caption_table
    remote, _ = backend(price_per_1k_input=0.5, price_per_1k_output=2.0)
    assert remote.generate(list(frame.photo), base_dir=folder) == list(frame.caption)
    usage = remote.usage
    assert usage.requests == len(frame) and usage.cached == 0 and usage.retries == 0
    assert usage.prompt_tokens >= 3 * len(frame) and usage.completion_tokens >= 5 * len(frame)
    assert usage.cost == pytest.approx(usage.prompt_tokens / 1000 * 0.5 + usage.completion_tokens / 1000 * 2.0)


def test_same_request_is_answered_from_the_disk_cache(backend, caption_table, tmp_path):
    frame, folder = caption_table
    photos = list(frame.photo[:4])
    first, _ = backend()
    expected = first.generate(photos, base_dir=folder)
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 4 and json.loads(entries[0].read_text())["text"] in expected
    second, _ = backend()  # a new process would find the same files
    assert second.generate(photos, base_dir=folder) == expected
    assert (second.usage.requests, second.usage.cached) == (0, 4)
    assert second.generate(photos, base_dir=folder, max_new_tokens=5) != expected  # other options: another request
    assert second.usage.requests == 4
    entries[0].write_text("{not json")  # a damaged entry is asked again and rewritten
    assert second.generate(photos, base_dir=folder) == expected and second.usage.requests == 5
    uncached, _ = backend(cache=False)
    uncached.generate(photos[:1], base_dir=folder)
    assert uncached.usage.requests == 1 and uncached.cache_dir is None


def test_client_side_rate_limit_paces_requests(backend, caption_table):
    from tessera.ratelimit import RateLimiter

    frame, folder = caption_table
    remote, _ = backend(requests_per_minute=2, cache=False)
    now, slept = [0.0], []
    remote._limiter = RateLimiter(clock=lambda: now[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    remote._sleep = sleep
    remote.generate(list(frame.photo[:4]), base_dir=folder, batch_size=1)
    assert slept == [pytest.approx(30.0), pytest.approx(30.0)]  # a burst of 2, then one every 30 s


def test_retries_a_rate_limited_request(backend, server):
    import httpx

    url, _ = server
    remote, key = backend(rate_per_minute=60, cache=False, model="lm")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        while http.get("/v1/models").status_code != 429:  # use up the key's minute
            pass
    assert remote.chat([{"role": "user", "content": "a red"}], max_new_tokens=3) is not None  # waited out Retry-After
    assert remote.usage.retries >= 1 and remote.usage.requests == 1


def test_streams_chats_and_refuses_clearly(backend, caption_table, tmp_path):
    from tessera.generate.openai_backend import OpenAICompatible

    frame, folder = caption_table
    remote, _ = backend()
    pieces = list(remote.stream(str(folder / frame.photo[0]), ""))
    assert len(pieces) > 3 and "".join(pieces) == frame.caption[0]
    assert remote.usage.requests == 1 and remote.usage.completion_tokens > 3
    text, _ = backend(model="lm")
    assert isinstance(text.chat([{"role": "user", "content": "a blue"}], max_new_tokens=4), str)
    with pytest.raises(TesseraError, match=r"refused the request \(404\): unknown model 'nope'"):
        backend(model="nope")[0].chat([{"role": "user", "content": "hi"}])
    with pytest.raises(TesseraError, match=r"refused the request \(400\): .*model 'lm' reads text only, not images"):
        text.generate([str(folder / frame.photo[0])], prompt="hi")
    with pytest.raises(TesseraError, match=rf"set the environment variable {KEY_ENV}_UNSET"):
        OpenAICompatible({"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": KEY_ENV + "_UNSET"})
    with pytest.raises(SchemaError, match=r"openai_compatible: unknown key\(s\) \['temprature'\]"):
        OpenAICompatible({"base_url": "http://127.0.0.1:9/v1", "model": "m", "temprature": 0})
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(SchemaError, match="not an image or a sound"):
        remote.generate([str(bad)])
    with pytest.raises(SchemaError, match="give a prompt"):
        backend(prompt=None)[0].generate([str(folder / frame.photo[0])])


@pytest.mark.realdata
def test_transcribes_through_the_server(backend, shared_data):
    from tessera import zoo

    if not zoo.is_installed("transcribe"):
        pytest.skip(zoo.CATALOG["transcribe"].install)
    import soundfile as sf

    from tessera.generate.transcriber import NAME

    wave, rate = sf.read(shared_data / "fsdd" / "recordings" / "3_jackson_0.wav", dtype="float32")
    remote, _ = backend(model=NAME)
    assert remote.transcribe(wave, rate).lower().strip(" .!?") in ("three", "3")
    assert remote.usage.completion_tokens >= 1
