"""``GET /`` and ``GET /ui/``: the comparison page; ``GET /ui/{asset}``: its script, style sheet and icon;
``GET /ui/stats``: what its charts plot.

The page reads only what any client may read (``/models``, ``/ui/stats``) and classifies through ``POST
/predict``, under the same limits; it needs no admin token. Its Content-Security-Policy allows scripts, styles,
fetches and images from this origin only (and ``blob:`` images, the preview of a chosen file), no inline script.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from app.serving.ui.stats import LiveStats, LiveStatsBody

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "router"]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",  # named by the page, so that browsers do not ask for /favicon.ico
}
"""Every file of the page (in ``app/serving/ui/static/``) and its media type."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter()


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=ASSETS[name], headers=_HEADERS)


@router.get("/", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
async def page() -> Response:
    """The comparison page."""
    return _file("index.html")


@router.get("/ui/stats", response_model=LiveStatsBody, tags=["ui"])
async def stats(request: Request) -> LiveStatsBody:
    """p50, p99 and answers per second of each variant over the last minutes, from the request-duration
    histogram, as PromQL's ``histogram_quantile`` computes them."""
    live: LiveStats = request.app.state.live_stats
    return live.read()


@router.get("/ui/{asset}", include_in_schema=False)
async def asset(asset: str) -> Response:
    """The page's script, style sheet or icon."""
    if asset not in ASSETS:
        raise HTTPException(404)  # answered as any unknown path: 404 not_found
    return _file(asset)
