"""``POST /v2/models/{name}[/versions/{version}]/infer``: the protocol's inference over REST, a raw ASGI door.

Like ``/predict`` (:mod:`app.serving.predict`) it is answered before FastAPI's stack: the model is resolved
from the path, the body is read with :func:`~app.serving.bodies.read_body` under the same size limit, least
upload rate, byte budget and deadline, parsed (JSON, or JSON and Triton's binary tensor data), handed to
:class:`~app.serving.v2.service.InferenceService`, and the answer encoded as the request asked (JSON, or binary
outputs after the JSON header). Errors have the protocol's body, ``{"error": "..."}``, and every request is
counted once under the protocol label ``v2-rest``.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from app.serving.asgi import Exchange
from app.serving.v2.binary import INFERENCE_HEADER_CONTENT_LENGTH
from app.serving.v2.rest import encode_infer_response, parse_infer_request
from app.serving.v2.service import InferenceService

__all__ = ["INFER_PATHS", "PROTOCOL", "infer"]

PROTOCOL = "v2-rest"
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
"""The paths of this door (path parameters as Starlette writes them)."""


async def infer(service: InferenceService, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one inference request; ``scope["path_params"]`` holds ``name`` and maybe ``version``."""
    plane = service.plane
    async with Exchange(send, plane.metrics, PROTOCOL, scope) as exchange:
        name: str = scope["path_params"]["name"]
        version: str | None = scope["path_params"].get("version")
        max_elements = service.admit(name, version, exchange.clock)
        headers = Headers(scope=scope)
        deadline = plane.deadline()
        async with plane.request_body(receive, headers, deadline) as body:
            request = parse_infer_request(body, headers.get(INFERENCE_HEADER_CONTENT_LENGTH), max_elements=max_elements)
            del body
            response = await service.infer(name, version, request, deadline, exchange.clock)
        encoded = encode_infer_response(response, request)
        await exchange.answer(encoded.body, encoded.headers)
