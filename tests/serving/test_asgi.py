"""Exchange: one answer per request, every request counted once, whatever breaks and when."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.serving.asgi import Exchange
from app.serving.errors import ClientDisconnected, QueueFull
from app.serving.metrics import ServingMetrics


def metrics() -> ServingMetrics:
    m = ServingMetrics(CollectorRegistry())
    m.add_model("m")
    return m


def counted(m: ServingMetrics, status: int) -> float:
    labels = {"model": "m", "variant": "collapsed", "protocol": "predict", "status": str(status)}
    return m.registry.get_sample_value("foldserve_requests_total", labels) or 0.0


class Recorder:
    def __init__(self, fail_on_body: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_on_body = fail_on_body

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.fail_on_body and message["type"] == "http.response.body":
            raise RuntimeError("the connection broke")


async def test_an_error_is_answered_with_its_status_and_counted() -> None:
    m, send = metrics(), Recorder()
    async with Exchange(send, m, "predict") as exchange:
        exchange.resolved("m", "collapsed")
        raise QueueFull("full", retry_after_s=2)
    start = send.messages[0]
    assert start["status"] == 503 and (b"retry-after", b"2") in start["headers"]
    assert counted(m, 503) == 1


async def test_a_client_gone_is_not_answered_and_counted_499() -> None:
    m, send = metrics(), Recorder()
    async with Exchange(send, m, "predict") as exchange:
        exchange.resolved("m", "collapsed")
        raise ClientDisconnected("gone")
    assert send.messages == [] and counted(m, 499) == 1


async def test_an_answer_that_breaks_while_sent_is_not_answered_twice() -> None:
    m, send = metrics(), Recorder(fail_on_body=True)
    async with Exchange(send, m, "predict") as exchange:
        exchange.resolved("m", "collapsed")
        await exchange.answer(b"{}")
    assert [message["type"] for message in send.messages] == ["http.response.start", "http.response.body"]
    assert counted(m, 499) == 1 and counted(m, 200) == 0


async def test_a_request_cancelled_by_the_server_goes_through_and_counts_as_503() -> None:
    import asyncio

    m, send = metrics(), Recorder()
    with pytest.raises(asyncio.CancelledError):
        async with Exchange(send, m, "predict") as exchange:
            exchange.resolved("m", "collapsed")
            raise asyncio.CancelledError
    assert send.messages == [] and counted(m, 503) == 1 and counted(m, 500) == 0
