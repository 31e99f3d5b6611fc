"""The header rule applied to parsed requests (:class:`HeaderLimits`), as foldserve's own protocol applies it."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.serving.http import HeaderLimits, header_excess

SETTINGS = Settings(max_headers=4, max_header_bytes=1024)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def guarded() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=HeaderLimits(hello, SETTINGS)), base_url="http://t")


def test_the_rule_counts_fields_first_then_bytes() -> None:
    assert header_excess(4, 1024, 4, 1024) is None
    assert header_excess(5, 10, 4, 1024) == "more than 4 header fields"
    assert header_excess(5, 9999, 4, 1024) == "more than 4 header fields"
    assert header_excess(1, 1025, 4, 1024) == "the request line and headers are longer than 1024 bytes"


@pytest.mark.asyncio
async def test_a_request_within_the_limits_reaches_the_app() -> None:
    async with guarded() as client:
        # httpx sends host, accept, accept-encoding, connection, user-agent: five fields, so set fewer of its own
        answer = await client.get("/x", headers={"user-agent": "u"})
    assert answer.status_code == 431  # five fields against a limit of four
    async with guarded() as client:
        client.headers.clear()
        answer = await client.get("/x", headers={"a": "1"})  # host and a
    assert (answer.status_code, answer.text) == (200, "ok")


@pytest.mark.asyncio
async def test_bytes_count_the_target_with_its_query_and_every_name_and_value() -> None:
    async with guarded() as client:
        client.headers.clear()
        # host: t (5 bytes) + "/" + "?" + query + "v" + value
        fits = await client.get("/", params={"q": "a" * 100}, headers={"v": "b" * 914})
        over = await client.get("/", params={"q": "a" * 100}, headers={"v": "b" * 915})
    used = len("host") + len("t") + len("/?q=") + 100 + len("v") + 914
    assert used == 1024
    assert fits.status_code == 200
    assert over.status_code == 431
    assert over.json() == {
        "error": {"code": "headers_too_large", "message": "the request line and headers are longer than 1024 bytes"}
    }
    assert over.headers["connection"] == "close"


@pytest.mark.asyncio
async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await HeaderLimits(app, SETTINGS)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
