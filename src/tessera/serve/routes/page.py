"""The search page (``/``) and its static files: a front end that asks for a key and sends it with every call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

PAGE = Path(__file__).parents[1] / "page"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; "
       "frame-ancestors 'none'")
# On everything the page is made of, wherever it is fetched from (``/`` or ``/static/index.html``):
# scripts only from this server, never framed (clickjacking), content types never guessed.
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}

router = APIRouter()


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse((PAGE / "index.html").read_text(), headers=HEADERS)


class PageFiles(StaticFiles):
    """Static files with the page's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


def static_files() -> StaticFiles:
    """The page's scripts and styles, mounted at ``/static`` (a router cannot carry a mount)."""
    return PageFiles(directory=PAGE)
