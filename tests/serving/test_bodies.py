"""read_body's time rules, on an ASGI ``receive`` driven by the test: the least upload rate times out a slow client,
not one whose bytes the server's event loop was too held up to read; the request's deadline bounds both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from starlette.datastructures import Headers

from app.serving.bodies import GRACE_S, BodyLimits, ByteBudget, read_body
from app.serving.errors import BodyTimeout

RATE = 1_000  # bytes/s
CHUNK = b"x" * 100  # 0.1 s of the least rate: the check after it is due GRACE_S + 0.1 s after the start
LOOPS: dict[str, Callable[[Awaitable[Any]], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def _receiver(second: Callable[[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]], None]) -> Any:
    """A ``receive`` whose first message is ``CHUNK`` with more to come; ``second`` arranges the last one."""
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": CHUNK, "more_body": True}
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        second(loop, future)
        return await future

    return receive


async def _read(receive: Any, *, deadline_s: float = 30.0, rate: int = RATE) -> tuple[bytes | Exception, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    budget = ByteBudget(1 << 20)
    with budget.hold() as tally:
        try:
            body: bytes | Exception = await read_body(
                receive,
                Headers({}),
                limits=BodyLimits(max_bytes=1 << 20, min_bytes_per_s=rate),
                deadline=started + deadline_s,
                budget=budget,
                tally=tally,
            )
        except BodyTimeout as error:
            body = error
    return body, loop.time() - started


def _last(loop: asyncio.AbstractEventLoop, future: asyncio.Future[dict[str, Any]], after: float) -> None:
    loop.call_later(after, future.set_result, {"type": "http.request", "body": CHUNK, "more_body": False})


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_that_arrived_while_the_event_loop_was_held_up_are_read_not_timed_out(loop: str) -> None:
    def second(ev: asyncio.AbstractEventLoop, future: asyncio.Future[dict[str, Any]]) -> None:
        _last(ev, future, 0.05)  # the client sent the rest at once...
        ev.call_soon(time.sleep, GRACE_S + 0.5)  # ...while the loop was held up past the least-rate check's time

    body, seconds = LOOPS[loop](_read(_receiver(second)))
    assert body == CHUNK * 2
    assert GRACE_S + 0.5 <= seconds < GRACE_S + 1.0


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_slower_than_the_least_rate_is_timed_out_when_its_check_is_due(loop: str) -> None:
    body, seconds = LOOPS[loop](_read(_receiver(lambda ev, future: _last(ev, future, GRACE_S + 1.0))))
    assert isinstance(body, BodyTimeout)
    assert "100 bytes in 1.1 s" in str(body)
    assert GRACE_S + 0.1 <= seconds < GRACE_S + 0.1 + 0.25


@pytest.mark.parametrize("loop", LOOPS)
def test_the_deadline_ends_a_body_whatever_the_loop_forgave(loop: str) -> None:
    def second(ev: asyncio.AbstractEventLoop, future: asyncio.Future[dict[str, Any]]) -> None:
        for k in range(2):  # held up past each least-rate check, and the client never sends the rest
            ev.call_later(k * 1.5, time.sleep, 1.4)

    body, seconds = LOOPS[loop](_read(_receiver(second), deadline_s=2.7))
    assert isinstance(body, BodyTimeout)
    # uvloop: libuv computes its poll's timeout from the clock read before a long callback, so a timer due during
    # a stall can run up to one more stall late (2.9 s with asyncio's loop, 3.9 s with uvloop)
    assert 2.7 <= seconds < 2.7 + 1.4 + 0.5
