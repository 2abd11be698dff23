"""A hosted or self-hosted model behind Tessera's generator interface: any OpenAI-compatible chat endpoint.

    backend = OpenAICompatible({"base_url": "http://localhost:8000/v1", "model": "llava",
                                "api_key_env": "OPENAI_API_KEY", "price_per_1k_input": 0.15})
    backend.generate(["dog.jpg"], prompt="What is in this picture?")   # like Generator.generate
    backend.chat([{"role": "user", "content": "Hi!"}])                  # like Generator.chat
    backend.transcribe(wave, 16000)                                     # like tessera.transcribe
    backend.usage                                                       # requests, tokens, cost

So a cloud API, vLLM, Ollama or another Tessera server (``/v1/chat/completions``) can caption,
answer or transcribe wherever a :class:`~tessera.generate.Generator` is used. Media go as
content parts: images as ``image_url`` data URLs, sound as ``input_audio`` (wav; other
formats are decoded and re-encoded). Requests go through the official ``openai`` client,
which retries 408/409/429/5xx answers and dropped connections with exponential backoff and
jitter, honouring ``Retry-After``. On top of it:

* a client-side rate limit (a token bucket, ``requests_per_minute``), so a long evaluation
  stays under the endpoint's quota instead of living on its 429s;
* an on-disk cache keyed by the request's content (endpoint, model, messages with their
  media, sampling options): the same request is answered from disk, so re-running an
  evaluation costs nothing. Entries are written atomically; a sampled reply (``do_sample``)
  is cached like any other, so pass ``cache=False`` in the config to draw fresh ones;
* cost accounting: tokens in and out as the endpoint reports them, and a cost when prices
  per 1k tokens are configured.

Unlike a local Generator, the reply's length is the endpoint's to decide unless
``max_new_tokens`` is given (no ``max_tokens`` is sent).

The key comes from an environment variable (``api_key_env``), never from a config file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from pydantic import Field

from tessera.errors import SchemaError, TesseraError
from tessera.files import atomic_write_text
from tessera.ratelimit import RateLimiter
from tessera.settings import PathLike, Settings

TRANSCRIBE_PROMPT = "Transcribe the speech in this recording. Reply with the words only."


class OpenAICompatibleConfig(Settings):
    """Where the endpoint is and how to use it; ``cache_dir`` defaults to ``cache_home()/openai``."""

    section: ClassVar[str] = "openai_compatible"
    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # None: the endpoint takes no key
    prompt: str | None = None  # what generate() asks about each input when no prompt is given ("": the input alone)
    max_retries: int = Field(4, ge=0)
    timeout_s: float = Field(120.0, gt=0)
    requests_per_minute: int = Field(0, ge=0)  # 0: no client-side limit
    concurrency: int = Field(4, ge=1)  # requests in flight at once in generate()
    cache: bool = True
    cache_dir: PathLike | None = None
    price_per_1k_input: float | None = Field(None, ge=0)
    price_per_1k_output: float | None = Field(None, ge=0)


@dataclass
class Usage:
    """What the endpoint was asked and what it cost; cached answers count in ``cached`` only."""

    requests: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # in the currency of the configured prices; None without prices


class OpenAICompatible:
    """An OpenAI-compatible chat endpoint with :class:`~tessera.generate.Generator`'s ``generate``/``stream``/``chat``."""

    def __init__(self, config: OpenAICompatibleConfig | Mapping[str, Any], *, source: str | None = None) -> None:
        try:
            import openai
        except ImportError as e:
            raise TesseraError("the openai_compatible backend needs the openai package: pip install 'tessera[generate]'") from e
        cfg = config if isinstance(config, OpenAICompatibleConfig) else OpenAICompatibleConfig.from_dict(config, source)
        self.config = cfg
        key = "none"
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise TesseraError(f"set the environment variable {cfg.api_key_env} to the API key for {cfg.base_url} "
                                   "(or api_key_env: null for an endpoint without keys)")
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=key, max_retries=cfg.max_retries, timeout=cfg.timeout_s)
        self._openai = openai
        self._limiter, self._sleep = RateLimiter(), time.sleep
        self._lock = threading.Lock()
        self._usage = Usage()
        if not cfg.cache:
            self.cache_dir: Path | None = None
        elif cfg.cache_dir is not None:
            self.cache_dir = Path(cfg.cache_dir)
        else:
            from tessera.datasets.home import cache_home

            self.cache_dir = cache_home() / "openai"

    # -- accounting ---------------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        with self._lock:
            u = Usage(**asdict(self._usage))
        pin, pout = self.config.price_per_1k_input, self.config.price_per_1k_output
        if pin is not None or pout is not None:
            u.cost = u.prompt_tokens / 1000 * (pin or 0.0) + u.completion_tokens / 1000 * (pout or 0.0)
        return u

    def _count(self, usage: Any, retries: int = 0) -> None:
        with self._lock:
            self._usage.requests += 1
            self._usage.retries += retries
            if usage is not None:
                self._usage.prompt_tokens += int(usage.prompt_tokens or 0)
                self._usage.completion_tokens += int(usage.completion_tokens or 0)

    def _pace(self) -> None:
        """Wait for the client-side rate limit (a token bucket shared by this backend's threads)."""
        while True:
            allowed, wait = self._limiter.allow("requests", self.config.requests_per_minute)
            if allowed:
                return
            self._sleep(wait)

    # -- requests -----------------------------------------------------------------------------
    def _options(self, max_new_tokens: int | None, do_sample: bool, temperature: float, top_p: float,
                 seed: int | None) -> dict[str, Any]:
        """The request's sampling fields; no ``max_tokens`` unless asked, so the endpoint's own limit applies."""
        if max_new_tokens is not None and max_new_tokens < 1:
            raise SchemaError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        options: dict[str, Any] = {} if max_new_tokens is None else {"max_tokens": max_new_tokens}
        options.update({"temperature": temperature, "top_p": top_p} if do_sample else {"temperature": 0.0})
        if seed is not None:
            options["seed"] = seed
        return options

    def _cache_path(self, request: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        body = json.dumps({"base_url": str(self.client.base_url), "request": request}, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _complete(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        """One chat completion's text, from the cache or the endpoint."""
        request = {"model": self.config.model, "messages": messages, **options}
        path = self._cache_path(request)
        if path is not None and path.is_file():
            try:
                text = json.loads(path.read_text())["text"]
            except (OSError, ValueError, KeyError):
                text = None  # unreadable entry: ask again and overwrite it
            if isinstance(text, str):
                with self._lock:
                    self._usage.cached += 1
                return text
        self._pace()
        try:
            raw = self.client.chat.completions.with_raw_response.create(**request)
        except self._openai.APIError as e:
            raise self._failed(e) from e
        completion = raw.parse()
        self._count(completion.usage, raw.retries_taken)
        text = completion.choices[0].message.content or ""
        if path is not None:
            entry = {"text": text, "finish_reason": completion.choices[0].finish_reason, "model": completion.model,
                     "usage": completion.usage.model_dump() if completion.usage is not None else None}
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(entry))
        return text

    def _failed(self, error: Any) -> TesseraError:
        """The endpoint's refusal (its own message, not the client's "Error code: ..." line) or the connection's failure."""
        if isinstance(error, self._openai.APIStatusError):
            body = error.body if isinstance(error.body, dict) else {}
            return TesseraError(f"{self.config.base_url} refused the request ({error.status_code}): "
                                f"{body.get('message') or error.message}")
        if isinstance(error, self._openai.APIConnectionError):
            return TesseraError(f"cannot reach {self.config.base_url}: {error.message}")
        return TesseraError(f"{self.config.base_url} failed: {error.message}")

    def _messages(self, messages: Sequence[Mapping[str, Any]], input: Any, base_dir: Any) -> list[dict[str, Any]]:
        """Tessera's messages as the API's: the media part goes first in the first user message."""
        from tessera.generate.chat import check_messages

        out: list[dict[str, Any]] = [dict(m) for m in check_messages(messages)]
        if input is not None:
            first = next((m for m in out if m["role"] == "user"), None)
            if first is None:
                raise SchemaError("the conversation has no user message to put the input in")
            text = [{"type": "text", "text": first["content"]}] if first["content"] else []
            first["content"] = [media_part(input, base_dir), *text]
        return out

    # -- the generator interface ----------------------------------------------------------------
    def chat(self, messages: Sequence[Mapping[str, Any]], input: Any = None, *, max_new_tokens: int | None = None,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
             base_dir: str | os.PathLike | None = None, use_cache: bool = True) -> str:
        """The assistant's reply to a conversation, about ``input`` (an image or a sound) if given.

        ``use_cache`` is accepted for :class:`~tessera.generate.Generator` parity (its KV cache) and has no effect.
        """
        options = self._options(max_new_tokens, do_sample, temperature, top_p, seed)
        return self._complete(self._messages(messages, input, base_dir), options)

    def generate(self, inputs: Sequence[Any] | None = None, prompt: str | Sequence[str] | None = None, *,
                 max_new_tokens: int | None = None, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 use_cache: bool = True, batch_size: int | None = None, base_dir: str | os.PathLike | None = None,
                 seed: int | None = None) -> list[str]:
        """One reply per input (image/audio path or bytes), or per prompt without inputs; ``batch_size`` requests at once."""
        if inputs is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if not prompts:
                raise SchemaError("give a prompt (or a list of prompts)")
            items = [(None, p) for p in prompts]
        else:
            if isinstance(inputs, (str, bytes)):
                raise SchemaError("inputs must be a list of media values (paths, bytes ...); for one value use [value]")
            default = self.config.prompt if prompt is None else prompt
            prompts = [default] * len(inputs) if default is None or isinstance(default, str) else list(default)
            if len(prompts) != len(inputs):
                raise SchemaError(f"got {len(inputs)} input(s) but {len(prompts)} prompts; give one prompt, or one per input")
            if any(p is None for p in prompts):
                raise SchemaError("give a prompt: the config sets no default one (openai_compatible.prompt)")
            items = list(zip(inputs, prompts))
        options = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                       seed=seed, base_dir=base_dir)

        def one(item: tuple[Any, str]) -> str:
            return self.chat([{"role": "user", "content": item[1]}], item[0], **options)

        workers = min(batch_size or self.config.concurrency, len(items))
        if workers <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-openai") as pool:
            return list(pool.map(one, items))

    def stream(self, input: Any = None, prompt: str | Sequence[Mapping[str, Any]] | None = None, *,
               max_new_tokens: int | None = None, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
               seed: int | None = None, base_dir: str | os.PathLike | None = None,
               use_cache: bool = True) -> Iterator[str]:
        """The reply as the endpoint streams it (never cached; tokens are counted from the stream's usage chunk)."""
        text = prompt if prompt is not None else self.config.prompt
        if text is None:
            raise SchemaError("give a prompt: the config sets no default one (openai_compatible.prompt)")
        messages = [{"role": "user", "content": text}] if isinstance(text, str) else text
        request = {"model": self.config.model, "messages": self._messages(messages, input, base_dir),
                   **self._options(max_new_tokens, do_sample, temperature, top_p, seed),
                   "stream": True, "stream_options": {"include_usage": True}}
        self._pace()
        usage = None
        try:
            with self.client.chat.completions.create(**request) as chunks:
                for chunk in chunks:
                    usage = chunk.usage or usage
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except self._openai.APIError as e:
            raise self._failed(e) from e
        self._count(usage)

    def transcribe(self, waveform: Any, sample_rate: int, *, prompt: str | None = None,
                   max_new_tokens: int | None = None) -> str:
        """The words spoken in ``waveform`` (as :func:`tessera.transcribe.transcribe`); ``prompt``: the domain's vocabulary."""
        messages = ([{"role": "system", "content": prompt}] if prompt else []) + [
            {"role": "user", "content": TRANSCRIBE_PROMPT}]
        return self.chat(messages, wav_bytes(waveform, sample_rate), max_new_tokens=max_new_tokens).strip()

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.config.model} at {self.config.base_url})"


def wav_bytes(waveform: Any, sample_rate: int) -> bytes:
    """A waveform (``(samples,)`` or ``(channels, samples)``) as 16-bit WAV bytes."""
    import numpy as np
    import soundfile as sf

    wave = np.asarray(waveform, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave.T if wave.ndim == 2 else wave, int(sample_rate), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def media_part(value: Any, base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """An image or a sound (path or bytes) as a chat content part: an image_url data URL, or input_audio wav/mp3."""
    from tessera.media import resolve_media, sniff_mime

    source = resolve_media(value, base_dir)
    data = source.data if source.data is not None else Path(source.path).read_bytes()
    mime = sniff_mime(data) or ""
    encoded = base64.b64encode
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded(data).decode()}"}}
    if mime.startswith("audio/"):
        if mime in ("audio/mpeg", "audio/mp3"):
            return {"type": "input_audio", "input_audio": {"data": encoded(data).decode(), "format": "mp3"}}
        if mime not in ("audio/wav", "audio/x-wav", "audio/vnd.wave"):
            from tessera.preprocess.audio import decode_audio

            data = wav_bytes(*decode_audio(source))
        return {"type": "input_audio", "input_audio": {"data": encoded(data).decode(), "format": "wav"}}
    raise SchemaError(f"{source.label}: not an image or a sound ({mime or 'unrecognised content'}); "
                      "an OpenAI-compatible endpoint takes images and wav/mp3 audio")
