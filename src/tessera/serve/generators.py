"""The generators a server holds: which request each answers, one call at a time per model, and their outputs.

Text generators (a saved :class:`~tessera.generate.Generator`, a pretrained LM such as
``gguf:gemma3-270m``, or ``whisper`` to transcribe) answer ``/v1/generate`` and
``/v1/chat/completions``; diffusion generators draw ``/v1/images/generations`` or speak
``/v1/audio/speech``, as does a one-pass speech decoder. Each has an id, which requests give as ``model``: its folder's name,
or the packaged model's name.

They run in the server process, one call at a time per model (a queue of at most
``generation_queue`` requests; more get a 503), on threads, and not in the worker processes
that run predictions and embeddings:

* a generation is one long call per request (a forward pass per token or sampling step),
  not many short ones that a batch could share: requests differ in prompt, length, sampling
  and whether they stream, so the batching the worker processes exist for does not apply;
* a streamed reply reaches the client piece by piece, while a worker process answers once
  per batch over its pipe;
* every worker process holds its own copy of the models, and an LM is large (Gemma 3 270M:
  ~1.1 GB in float32 per copy).

The cost: the decoding loop's Python shares the event loop's GIL while a reply is written.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

from starlette.concurrency import iterate_in_threadpool

from tessera.errors import TesseraError
from tessera.preprocess import preprocessor_class
from tessera.serve import inputs as rq
from tessera.serve.config import ServeConfig
from tessera.serve.problems import Problem

log = logging.getLogger("tessera.serve")
KINDS = {"chat": "text model", "images": "image model", "speech": "speech model"}
FLAGS = {"chat": "--generator", "images": "--image-generator", "speech": "--speech-generator"}
LISTENS_SECONDS = 30.0


@dataclass(eq=False)
class Served:
    """One loaded generator under its id; ``active`` counts its requests running or waiting for their turn."""

    id: str
    kind: str  # a key of KINDS
    model: Any
    active: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def modality(self) -> str | None:
        """What a text model reads besides text (image, audio), None for text only."""
        return getattr(self.model, "modality", None)

    @cached_property
    def field(self) -> rq.Field:
        """Its input as a request field: what bounds a sent image or sound before decoding, and meters its cost.

        A saved Generator's own preprocessor (as for predictions); a model without one (Whisper)
        is bounded as an input of its modality that keeps ``LISTENS_SECONDS`` (Whisper's window).
        """
        pipeline = getattr(self.model, "pipeline", None)
        if pipeline is not None:
            from tessera.generate.generator import INPUT

            return rq.Field.of(INPUT, INPUT, pipeline.preprocessors[INPUT])
        options = {"sample_rate": 16000, "max_seconds": LISTENS_SECONDS} if self.modality == "audio" else {}
        return rq.Field.of("input", "input", preprocessor_class(self.modality)(["input"], **options))

    @property
    def placeholder(self) -> str:
        """Where in the prompt its input goes (``<image>``)."""
        model = getattr(self.model, "model", self.model)
        return getattr(model, "placeholder", f"<{self.modality}>")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images a diffusion model draws."""
        shape = self.model.meta.get("data_shape") or self.model.shape  # data_shape: pixels, when sampling is latent
        return int(shape[2]), int(shape[1])

    @property
    def voices(self) -> list[str]:
        return list(self.model.label_names)

    def describe(self) -> dict[str, Any]:
        """This model in ``/v1/models``: OpenAI's fields, then what requests may ask of it."""
        out: dict[str, Any] = {"id": self.id, "object": "model", "created": 0, "owned_by": "tessera", "kind": self.kind}
        if self.kind == "chat":
            out["inputs"] = ["text"] + ([self.modality] if self.modality else [])
        elif self.kind == "images":
            out["sizes"] = ["{}x{}".format(*self.size)]
        else:
            out["voices"] = self.voices or ["default"]
            out["sample_rate"] = int(self.model.meta.get("sample_rate", 8000))
        return out


def kind_of(model: Any) -> str:
    """Which requests a loaded generator answers, by what it is."""
    from tessera.generate.diffusion import DiffusionGenerator
    from tessera.generate.speech_decoder import SpeechDecoder

    if isinstance(model, SpeechDecoder):
        return "speech"
    if isinstance(model, DiffusionGenerator):
        return "speech" if model.meta.get("task") == "text2speech" else "images"
    if callable(getattr(model, "stream", None)):
        return "chat"
    raise TesseraError(f"cannot serve a {type(model).__name__}: a generator is a text Generator, a Transcriber, "
                       "a DiffusionGenerator or a SpeechDecoder")


class Generators:
    """The loaded generators by id, found per request by id and kind, each taking one request at a time."""

    def __init__(self, loaded: Mapping[str, Any] | None, config: ServeConfig) -> None:
        self.served = {name: Served(name, kind_of(m), m) for name, m in (loaded or {}).items()}
        self.queue, self.max_images = config.generation_queue, config.max_images

    def __bool__(self) -> bool:
        return bool(self.served)

    def get(self, model_id: str | None, kind: str) -> Served:
        """The generator a request names (or the only one of its kind): 404 for an unknown id, 422 for the wrong kind."""
        same = sorted(name for name, s in self.served.items() if s.kind == kind)
        if model_id is None:
            if len(same) == 1:
                return self.served[same[0]]
            if not same:
                raise Problem(404, f"this server has no {KINDS[kind]} (start it with {FLAGS[kind]})", kind="no_model")
            raise Problem(422, f"this server has several {KINDS[kind]}s; name one as 'model': {same}", kind="invalid_request",
                          param="model")
        served = self.served.get(model_id)
        if served is None:
            have = f"its {KINDS[kind]}s are {same}" if same else f"it has no {KINDS[kind]} (start it with {FLAGS[kind]})"
            raise Problem(404, f"unknown model {model_id!r}; {have}", kind="model_not_found", param="model")
        if served.kind != kind:
            article = "an" if KINDS[served.kind][0] in "aeiou" else "a"
            raise Problem(422, f"model {model_id!r} is {article} {KINDS[served.kind]}, not a {KINDS[kind]}; "
                          f"{KINDS[kind]}s here: {same}", kind="wrong_model", param="model")
        return served

    def admit(self, served: Served) -> None:
        """Refuse (503) a request that would queue behind ``generation_queue`` others for this model."""
        if served.active >= self.queue:
            raise Problem(503, f"model {served.id!r} has {served.active} requests running or waiting (at most "
                          f"{self.queue}); retry shortly", kind="busy", headers={"Retry-After": "1"})

    @asynccontextmanager
    async def turn(self, served: Served) -> AsyncIterator[None]:
        """This model's turn: one call at a time, counted while it waits and runs."""
        served.active += 1
        try:
            async with served.lock:
                yield
        finally:
            served.active -= 1

    def listing(self) -> list[dict[str, Any]]:
        """``/v1/models``' entries; an image model's says how many images one request may ask for."""
        return [s.describe() | ({"max_n": self.max_images} if s.kind == "images" else {}) for s in self.served.values()]


# -- text -------------------------------------------------------------------------------------------
class Generation:
    """One text reply in progress: its pieces (``async for``, in the model's turn), then why it ended and its tokens.

    ``stops``: the request's stop strings; the reply is cut before the first one and the
    generation ends there. The model's generation runs on a thread and is closed when
    the pieces are no longer wanted (the client went away, a stop string was reached).
    """

    def __init__(self, generators: Generators, served: Served, reply: Any, stops: Sequence[str] = ()) -> None:
        from tessera.generate.chat import ReplyStream  # here: importing tessera.generate loads transformers

        self.generators, self.served, self.reply = generators, served, reply
        self.cut = ReplyStream(stops) if stops else None
        self.text = ""

    async def __aiter__(self) -> AsyncIterator[str]:
        async with self.generators.turn(self.served):
            try:
                async for piece in iterate_in_threadpool(self.reply):
                    if self.cut is not None:
                        piece = self.cut.push(piece)
                    if piece:
                        self.text += piece
                        yield piece
                    if self.cut is not None and self.cut.done:
                        break
                else:
                    if self.cut is not None and (rest := self.cut.close()):
                        self.text += rest
                        yield rest
            finally:
                self.reply.close()

    async def complete(self) -> str:
        async for _ in self:
            pass
        return self.text

    @property
    def finish_reason(self) -> str:
        stopped = self.cut is not None and self.cut.done
        return "length" if self.reply.hit_limit and not stopped else "stop"

    @property
    def usage(self) -> dict[str, int]:
        p, c = int(self.reply.prompt_tokens), int(self.reply.reply_tokens)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def start_reply(model: Any, media: bytes | None, prompt: Any, *, max_new_tokens: int, temperature: float | None,
                top_p: float | None, seed: int | None, fit_context: bool = False) -> Any:
    """The model's streamed reply, prompt assembled (and media encoded): runs on a thread, before the model's turn.

    Temperature 0 or absent is greedy decoding; above 0 samples (with ``top_p``). ``fit_context``:
    ``max_new_tokens`` was not asked for, so it shrinks to what the LM's context leaves.
    """
    import torch

    if seed is not None:  # torch's global generator: reproducible while no other generation samples at once
        torch.manual_seed(seed)
    sampled = bool(temperature)
    options = {"max_new_tokens": max_new_tokens, "do_sample": sampled, "fit_context": fit_context}
    if sampled:
        options.update(temperature=float(temperature), top_p=float(top_p or 1.0))
    return model.stream(media, prompt, **options)


# -- images and speech --------------------------------------------------------------------------------
def png_images(generator: Any, prompt: str, n: int, **options: Any) -> list[bytes]:
    """``n`` images for one prompt, each PNG-encoded."""
    from PIL import Image

    out = []
    for im in generator.generate([prompt], n, progress=False, **options):
        buffer = io.BytesIO()
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def wav_speech(generator: Any, text: str, voice: str | None, **options: Any) -> bytes:
    """One spoken rendering of ``text`` as 16-bit WAV bytes."""
    import soundfile as sf

    from tessera.generate.speech import SAMPLE_RATE, speak

    (wave,) = speak(generator, [text], 1, speaker=voice, progress=False, **options)
    buffer = io.BytesIO()
    sf.write(buffer, wave, int(generator.meta.get("sample_rate", SAMPLE_RATE)), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# -- loading (what `tessera serve` names) ---------------------------------------------------------------
def text_generator(source: str) -> tuple[str, Any]:
    """(id, model) for ``--generator``: ``whisper``, a saved Generator folder, or a pretrained LM (``gguf:NAME``, a folder, an id)."""
    from tessera.generate.transcriber import ALIASES, NAME, Transcriber

    if source in ALIASES:
        return NAME, Transcriber()
    from tessera.generate.generator import META_FILE, Generator

    path = Path(source).expanduser()
    if (path / META_FILE).is_file():
        return path.resolve().name, Generator.load(path)
    name = source.removeprefix("gguf:") if source.startswith("gguf:") else (path.resolve().name if path.exists() else source)
    return name, Generator.from_lm(source)


def diffusion_generator(source: str | os.PathLike, kind: str, text: dict[str, Any]) -> tuple[str, Any]:
    """(id, model) for ``--image-generator`` / ``--speech-generator``; ``text`` shares text encoders between them."""
    from tessera.generate.diffusion import META_FILE
    from tessera.generate.speech import load_generator

    path = Path(source).expanduser()
    meta_path = path / META_FILE
    spec = json.loads(meta_path.read_text()).get("text_encoder") if meta_path.is_file() else None
    generator = load_generator(path, text=text.get(spec))  # a diffusion model or a one-pass speech decoder
    text.setdefault(spec, generator.text)
    if kind_of(generator) != kind:
        other = "images" if kind == "speech" else "speech"
        raise TesseraError(f"{path} is a {KINDS[other]} (task {generator.meta.get('task')!r}): serve it with {FLAGS[other]}")
    return path.resolve().name, generator


def load_generators(text: Sequence[str] = (), images: Sequence[str | os.PathLike] = (),
                    speech: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Id -> loaded generator for the sources ``tessera serve`` names; two with one id are an error."""
    out: dict[str, Any] = {}
    encoders: dict[str, Any] = {}
    named = [text_generator(str(s)) for s in text]
    named += [diffusion_generator(s, "images", encoders) for s in images]
    named += [diffusion_generator(s, "speech", encoders) for s in speech]
    for name, model in named:
        if name in out:
            raise TesseraError(f"two generators are both named {name!r} (their folders' names); rename one folder")
        out[name] = model
        log.info("serving %s as model %r", model, name)
    return out
