"""``/v1/images/generations``, OpenAI-compatible: a prompt in, ``n`` PNG images out as base64 (``b64_json``).

The size is the one the model draws (``/v1/models`` lists it); another is refused, not
resized. Tessera's sampling options ride along as extra fields: ``seed`` (same seed, same
images), ``guidance`` and ``steps``.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tessera.serve.bodies import ImagesBody, body_doc
from tessera.serve.dependencies import Caller
from tessera.serve.generators import png_images
from tessera.serve.parsing import read_json, validate
from tessera.serve.problems import Problem
from tessera.serve.routes import json_response

router = APIRouter(tags=["generate"])


def sampling(body: Any, max_steps: int) -> dict[str, Any]:
    """The diffusion options a request sets (seed, guidance, steps), the steps within the server's cap."""
    if body.steps is not None and body.steps > max_steps:
        raise Problem(422, f"steps {body.steps} is over this server's limit of {max_steps}", kind="invalid_request",
                      param="steps")
    return {k: v for k, v in {"seed": body.seed, "guidance": body.guidance, "steps": body.steps}.items() if v is not None}


@router.post("/v1/images/generations", response_model=dict[str, Any], openapi_extra=body_doc(ImagesBody))
async def images(request: Request, caller: Caller) -> Response:
    """OpenAI's image generation: {prompt, n, size, response_format: b64_json} -> PNG images, base64-encoded."""
    state = caller.state
    body: ImagesBody = validate(ImagesBody, await read_json(request))
    served = state.generators.get(body.model, "images")
    if body.response_format not in (None, "b64_json"):
        raise Problem(422, f"response_format {body.response_format!r} is not offered: this server keeps no images to link "
                      "to; ask for 'b64_json'", kind="invalid_request", param="response_format")
    if body.output_format not in (None, "png"):
        raise Problem(422, f"output_format {body.output_format!r} is not offered; images are 'png'",
                      kind="invalid_request", param="output_format")
    if body.n > state.config.max_images:
        raise Problem(422, f"n={body.n} is over this server's limit of {state.config.max_images} images per request",
                      kind="invalid_request", param="n")
    size = "{}x{}".format(*served.size)
    if body.size not in (None, "auto", size):
        raise Problem(422, f"size {body.size!r} is not one this model draws; it draws {size}", kind="invalid_request",
                      param="size")
    options = sampling(body, state.config.max_sampling_steps)
    state.generators.admit(served)
    async with state.generators.turn(served):
        pngs = await run_in_threadpool(png_images, served.model, body.prompt, body.n, **options)
    data = [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": body.prompt} for png in pngs]
    return json_response({"created": int(time.time()), "data": data, "size": size, "output_format": "png"})
