"""The search page (``/``) and its static files: a front end that asks for a key and sends it with every call."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parents[1] / "page"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; "
       "frame-ancestors 'none'")

router = APIRouter()


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def page() -> HTMLResponse:
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse((PAGE / "index.html").read_text(), headers=headers)


def static_files() -> StaticFiles:
    """The page's scripts and styles, mounted at ``/static`` (a router cannot carry a mount)."""
    return StaticFiles(directory=PAGE)
