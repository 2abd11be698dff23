"""Whisper tiny.en behind the text generator's interface: a sound in, its transcript out.

So that what serves or evaluates a :class:`~tessera.generate.Generator` (``tessera serve
--generator whisper``, an OpenAI-compatible chat request with an ``input_audio`` part)
transcribes with the packaged Whisper (:mod:`tessera.transcribe`) the same way. Whisper
follows no instructions: the user's text is not read; a ``prompt`` (or the conversation's
system message) is Whisper's *initial prompt*, the domain's vocabulary, which is what it
uses text for.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

from tessera.errors import SchemaError

NAME = "whisper-tiny.en"
ALIASES = ("whisper", NAME)


class Transcript:
    """One transcript behind the streamed-reply interface: transcribed on the first ``next``, one piece.

    ``prompt_tokens`` counts the initial prompt; ``reply_tokens`` the transcript, in Whisper's tokenizer.
    """

    hit_limit = False

    def __init__(self, transcriber: Transcriber, wave: Any, rate: int, prompt: str | None) -> None:
        self._args = (transcriber, wave, rate, prompt)
        self.prompt_tokens = transcriber.count_tokens(prompt or "")
        self.reply_tokens = 0
        self._pieces = self._run()

    def __iter__(self) -> Transcript:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        try:
            self._pieces.close()
        except ValueError:  # being transcribed on another thread: it ends by itself
            pass

    def _run(self) -> Iterator[str]:
        from tessera.transcribe import transcribe

        transcriber, wave, rate, prompt = self._args
        text = transcribe(wave, rate, beam_size=transcriber.beam_size, cpu_threads=transcriber.cpu_threads,
                          prompt=prompt)
        self.reply_tokens = transcriber.count_tokens(text)
        if text:
            yield text


class Transcriber:
    """The packaged Whisper tiny.en with :class:`~tessera.generate.Generator`'s ``generate``/``stream``/``chat``."""

    modality = "audio"
    placeholder = "<audio>"

    def __init__(self, *, beam_size: int = 5, cpu_threads: int = 1) -> None:
        from tessera import zoo

        zoo.require("transcribe")
        self.beam_size, self.cpu_threads = beam_size, cpu_threads

    def count_tokens(self, text: str) -> int:
        from tessera.transcribe import load_whisper

        return len(load_whisper(self.cpu_threads).hf_tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def _wave(self, value: Any, base_dir: str | os.PathLike | None) -> tuple[Any, int]:
        from tessera.media import resolve_media
        from tessera.preprocess.audio import decode_audio

        return decode_audio(resolve_media(value, base_dir))

    def stream(self, input: Any = None, prompt: str | Sequence[Any] | None = None, *,
               base_dir: str | os.PathLike | None = None, **options: Any) -> Transcript:
        """The transcript of one sound (path or bytes). Generation options (``max_new_tokens`` ...) do not apply."""
        if input is None:
            raise SchemaError("this model transcribes speech: give it one audio input")
        if prompt is not None and not isinstance(prompt, str):  # a conversation: its system text is the prompt
            prompt = "\n".join(m["content"] for m in prompt if m["role"] == "system") or None
        wave, rate = self._wave(input, base_dir)
        return Transcript(self, wave, rate, prompt)

    def chat(self, messages: Sequence[Any], input: Any = None, *, base_dir: str | os.PathLike | None = None,
             **options: Any) -> str:
        return "".join(self.stream(input, messages, base_dir=base_dir))

    def generate(self, inputs: Sequence[Any] | None = None, prompt: str | Sequence[str] | None = None, *,
                 base_dir: str | os.PathLike | None = None, **options: Any) -> list[str]:
        """One transcript per sound; ``prompt`` (one, or one per input) is Whisper's initial prompt."""
        if inputs is None or isinstance(inputs, (str, bytes)):
            raise SchemaError("inputs must be a list of audio values (paths, bytes ...); for one value use [value]")
        prompts = [prompt] * len(inputs) if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(inputs):
            raise SchemaError(f"got {len(inputs)} input(s) but {len(prompts)} prompts; give one prompt, or one per input")
        return ["".join(self.stream(v, p, base_dir=base_dir)) for v, p in zip(inputs, prompts)]

    def __repr__(self) -> str:
        return f"Transcriber({NAME}, beam_size={self.beam_size})"
