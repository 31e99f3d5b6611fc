"""The protocol's gRPC door: ``GRPCInferenceService`` on ``grpc.aio``, in the event loop that runs uvicorn.

The servicer only translates (:mod:`app.serving.v2.converters`) and calls the same
:class:`~app.serving.v2.service.InferenceService` as the REST routes, so a gRPC request meets the same registry,
batchers, decoder, limits and deadline, and is counted in the same series with the protocol label ``v2-grpc``
(its status label the HTTP status of the same error over REST, 200 for OK). Errors become status codes through
:func:`~app.serving.v2.converters.grpc_status`, after :func:`~app.serving.errors.error_answer` (the mapping every
door uses); a ``Retry-After`` goes out as trailing metadata.

- **Deadline.** A request must be answered by the earlier of the service's deadline
  (``FOLDSERVE_REQUEST_TIMEOUT_S``) and the client's gRPC deadline; past it, DEADLINE_EXCEEDED.
- **Size.** gRPC's receive limit (4 MiB by default) is raised to ``FOLDSERVE_MAX_BODY_BYTES``: a larger message
  is refused by gRPC itself with RESOURCE_EXHAUSTED. A message received counts against the same byte budget as
  HTTP bodies while it is served.
- **Port.** ``FOLDSERVE_GRPC_PORT`` (0: no gRPC) on ``FOLDSERVE_HOST``. With one worker ``SO_REUSEPORT`` is
  turned off (grpcio turns it on by default on Linux), so that a port already taken fails the start instead of
  being shared with another server unnoticed; with several workers (``FOLDSERVE_WORKERS``) each worker binds
  the port with ``SO_REUSEPORT`` and the kernel spreads connections over them, as the shared HTTP socket does
  (``python -m app serve`` first checks that no other server holds the port).
- **Model configuration.** Triton's ``ModelConfig`` RPC (its model configuration extension, which Triton's
  clients and ``perf_analyzer`` ask before they infer) is served beside the protocol's RPCs, under the same
  service name: its messages are in ``triton_model_config.proto``, and it answers what
  ``GET /v2/models/{name}/config`` answers.
- **Undecodable messages.** A request whose bytes do not parse is INVALID_ARGUMENT
  (:mod:`app.serving.v2.grpc_handlers`), not the UNKNOWN gRPC would answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from app.config import Settings
from app.serving.errors import ServingError, error_answer
from app.serving.metrics import RequestClock
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from app.serving.v2 import triton_model_config_pb2 as config_pb
from app.serving.v2.converters import (
    grpc_status,
    infer_request_from_grpc,
    infer_response_to_grpc,
    model_config_to_grpc,
    model_metadata_to_grpc,
    server_metadata_to_grpc,
)
from app.serving.v2.grpc_handlers import SERVICE, method_handlers
from app.serving.v2.service import InferenceService

__all__ = ["PROTOCOL", "InferenceServicer", "grpc_address", "grpc_options", "start_grpc_server"]

logger = logging.getLogger(__name__)

PROTOCOL = "v2-grpc"

T = TypeVar("T")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's RPCs over one :class:`InferenceService`."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return await _call(context, lambda: pb.ServerReadyResponse(ready=self.service.server_ready()))

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return await _call(
            context, lambda: pb.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))
        )

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return await _call(context, lambda: server_metadata_to_grpc(self.service.server_metadata()))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return await _call(
            context, lambda: model_metadata_to_grpc(self.service.model_metadata(request.name, request.version))
        )

    async def ModelConfig(
        self, request: config_pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb.ModelConfigResponse:
        """Triton's extension, not the protocol's: registered by :func:`start_grpc_server` beside the others."""
        return await _call(
            context, lambda: model_config_to_grpc(self.service.model_config(request.name, request.version or None))
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        clock = RequestClock(self.service.plane.metrics, PROTOCOL)
        status, error = 500, None
        try:
            answer = await self._infer(request, context, clock)
            status = 200
            return answer
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed first
            remaining = context.time_remaining()
            status = 504 if remaining is not None and remaining <= 0 else 499
            raise
        except Exception as exc:
            status, error = error_answer(exc, f"a {PROTOCOL} request")
            await _abort(context, error)
            raise  # not reached: abort raises
        finally:
            clock.done(status, error)

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext, clock: RequestClock
    ) -> pb.ModelInferResponse:
        service = self.service
        deadline = _deadline(service, context)
        name, version = request.model_name, request.model_version
        max_elements = service.admit(name, version, clock)
        budget = service.plane.body_budget
        with budget.hold() as tally:
            budget.take(tally, request.ByteSize())  # gRPC holds the message already: count it while it is served
            parsed = infer_request_from_grpc(request, max_elements=max_elements)
            response = await service.infer(name, version, parsed, deadline, clock)
        return infer_response_to_grpc(response)


async def _call(context: grpc.aio.ServicerContext, call: Callable[[], T]) -> T:
    try:
        return call()
    except Exception as exc:
        await _abort(context, error_answer(exc, f"a {PROTOCOL} call")[1])
        raise  # not reached: abort raises


async def _abort(context: grpc.aio.ServicerContext, error: ServingError) -> None:
    headers = error.headers()
    if headers:
        context.set_trailing_metadata(tuple((name.lower(), value) for name, value in headers.items()))
    await context.abort(*grpc_status(error))


def _deadline(service: InferenceService, context: grpc.aio.ServicerContext) -> float:
    """The earlier of the service's deadline and the client's, on the event loop's clock."""
    deadline = service.plane.deadline()
    remaining = context.time_remaining()
    if remaining is not None:
        deadline = min(deadline, asyncio.get_running_loop().time() + remaining)
    return deadline


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """The server's channel options: the body limit as receive limit, ``SO_REUSEPORT`` only for workers, and the
    connection age after which a client is sent GOAWAY (its channel reconnects, maybe to another worker: one that
    was replaced gets its share back)."""
    options = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.so_reuseport", int(settings.workers > 1)),
    ]
    if settings.grpc_max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(settings.request_timeout_s * 1000)),
        ]
    return options


async def start_grpc_server(service: InferenceService) -> Callable[[float | None], Awaitable[None]]:
    """Serve the protocol's gRPC service on ``settings.host:settings.grpc_port``, in the running event loop.

    Returns:
        ``stop(grace)``: stops accepting calls and lets those in flight finish for up to ``grace`` seconds.

    Raises:
        OSError: the port cannot be bound (taken, or a host with no such address).
    """
    settings = service.settings
    server = grpc.aio.server(options=grpc_options(settings))
    servicer = InferenceServicer(service)
    handlers = method_handlers(servicer)  # the generated ones answer UNKNOWN for a message that does not parse
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    address = grpc_address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio says only "Failed to bind"
        raise OSError(f"cannot serve gRPC on {address} (FOLDSERVE_GRPC_PORT): {exc}") from None
    await server.start()
    logger.info("gRPC (Open Inference Protocol) on %s", address)

    async def stop(grace: float | None) -> None:
        await server.stop(grace)

    return stop


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC writes it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
