"""The gRPC method handlers of the protocol's service, decoding each request without raising.

gRPC decodes a request before any method sees it. The generated handlers decode with ``FromString``, and a
message that does not parse (bytes cut short, a string field that is not UTF-8) makes gRPC answer UNKNOWN
("Unexpected DecodeError"), the code of a server bug. Here such a message reaches the method as
:class:`Undecodable`, and the method answers INVALID_ARGUMENT saying why, as it answers any other bad request.
The handlers cover the protocol's methods and Triton's ``ModelConfig``, under the one service name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import triton_model_config_pb2 as config_pb

__all__ = ["SERVICE", "Undecodable", "method_handlers"]

SERVICE = "inference.GRPCInferenceService"

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request whose bytes are not a message of its method's type."""

    message_type: str
    reason: str


def method_handlers(servicer: object) -> dict[str, grpc.RpcMethodHandler]:
    """Every method of the service, ``servicer``'s method of the same name behind each."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    types: dict[str, tuple[type[Message], type[Message]]] = {
        method.name: (getattr(pb, method.input_type.name), getattr(pb, method.output_type.name))
        for method in service.methods
    }
    types["ModelConfig"] = (config_pb.ModelConfigRequest, config_pb.ModelConfigResponse)
    return {
        name: grpc.unary_unary_rpc_method_handler(
            _refusing_undecodable(getattr(servicer, name)),
            request_deserializer=_decoder(request),
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in types.items()
    }


def _decoder(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_type.DESCRIPTOR.full_name, str(exc))

    return decode


def _refusing_undecodable(method: Method) -> Method:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Message:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request.message_type} message: {request.reason}",
            )
        return await method(request, context)

    return handle
