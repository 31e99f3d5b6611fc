"""A Ray Serve deployment that does nothing: what Ray's ingress costs on its own, beside foldserve's replicas.

An ASGI ingress, as foldserve's is, so that a request takes the same way through Ray: it reads the request's body
(the same PNG foldserve gets) and answers a fixed JSON object, with as many replicas as foldserve has (one per
node, no CPU reserved), on the same cluster.
"""

from __future__ import annotations

from typing import Any

from ray import serve

__all__ = ["Noop", "app"]

ANSWER = b'{"ok":true}'


class Answer:
    """The ASGI app: the lifespan acknowledged, every HTTP request's body read and :data:`ANSWER` sent (an object,
    not a function: ``serve.ingress`` calls a function to build the app)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer(scope, receive, send)


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body", False):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


@serve.deployment(name="Noop", num_replicas=2, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(Answer())
class Noop:
    pass


app = Noop.bind()
