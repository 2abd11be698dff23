"""``/v1/audio/speech``, OpenAI-compatible: text in, WAV bytes out; the voice is one of the model's speakers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tessera.serve.bodies import SpeechBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.generators import wav_speech
from tessera.serve.parsing import read_json, validate
from tessera.serve.problems import Problem
from tessera.serve.routes.images import sampling

router = APIRouter(tags=["generate"])


@router.post("/v1/audio/speech", response_class=Response, openapi_extra=body_doc(SpeechBody),
             responses={200: {"content": {"audio/wav": {}}}})
async def speech(request: Request, caller: Caller) -> Response:
    """OpenAI's text to speech: {model, input, voice, response_format: wav} -> a WAV file."""
    state = caller.state
    body: SpeechBody = validate(SpeechBody, await read_json(request))
    served = state.generators.get(body.model, "speech")
    if body.response_format not in (None, "wav"):
        raise Problem(422, f"response_format {body.response_format!r} is not offered; this server writes 'wav'",
                      kind="invalid_request", param="response_format")
    if body.speed not in (None, 1.0):
        raise Problem(422, f"speed {body.speed}: this model speaks at one speed (1.0)", kind="invalid_request",
                      param="speed")
    voices = served.voices
    if voices and body.voice not in voices:
        raise Problem(422, f"voice {body.voice!r} is not one of this model's speakers: {voices}", kind="invalid_request",
                      param="voice")
    if not voices and body.voice != "default":
        raise Problem(422, f"voice {body.voice!r}: this model has one voice, 'default'", kind="invalid_request",
                      param="voice")
    options = sampling(body, state.config.max_sampling_steps)
    state.generators.admit(served)
    async with state.generators.turn(served):
        wav = await run_in_threadpool(wav_speech, served.model, body.input, body.voice if voices else None, **options)
    return Response(wav, media_type="audio/wav")
