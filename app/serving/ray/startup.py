"""When a replica may take traffic: once its models have finished loading and the app says it is ready.

Ray routes requests to a replica as soon as its constructor and the app's lifespan startup have returned; it has
no readiness probe. foldserve's lifespan returns at once and loads in the background (``/readyz`` tells a
single process's load balancer when to send traffic), so a replica would be sent requests for models still
loading. :func:`wait_until_loaded` holds the startup until no model is ``loading`` (``GET /models``), then asks
the app's own readiness rule (``GET /readyz``), so that the rule stays in one place, behind every door. A
replica whose store gives no ready model fails to start, with the app's reasons, and Ray reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from starlette.types import ASGIApp

__all__ = ["ReplicaNotReady", "wait_until_loaded", "waiting_lifespan"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class ReplicaNotReady(RuntimeError):
    """The replica's models finished loading and the app is still not ready."""


async def wait_until_loaded(app: ASGIApp, *, poll_s: float = 0.2) -> dict[str, Any]:
    """Return ``GET /readyz``'s answer once no model is loading; raise if it is not 200.

    Args:
        app: the started application (its lifespan entered).
        poll_s: how often to ask ``/models``.

    Raises:
        ReplicaNotReady: loading finished and ``/readyz`` is not 200; the message has its reason and each
            failed model's.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        while True:
            models = (await client.get("/models")).json()["models"]
            if not any(model["status"] == "loading" for model in models):
                break
            await asyncio.sleep(poll_s)
        ready = await client.get("/readyz")
    if ready.status_code != 200:
        failed = "; ".join(f"{m['name']}: {m.get('reason')}" for m in models if m["status"] == "failed")
        message = ready.json().get("error", {}).get("message", ready.text)
        raise ReplicaNotReady(f"not ready once loading finished: {message}; failed models: {failed or 'none'}")
    answer: dict[str, Any] = ready.json()
    return answer


def waiting_lifespan(lifespan: Lifespan, *then: Callable[[], AbstractAsyncContextManager[None]]) -> Lifespan:
    """``lifespan``, with its startup finishing only once :func:`wait_until_loaded` returns.

    Args:
        lifespan: the application's lifespan (``app.router.lifespan_context``).
        then: context managers entered after the wait and left before ``lifespan`` ends.
    """

    @contextlib.asynccontextmanager
    async def waiting(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state, contextlib.AsyncExitStack() as stack:
            await wait_until_loaded(app)
            for make in then:
                await stack.enter_async_context(make())
            yield state

    return waiting
