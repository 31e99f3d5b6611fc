"""Between the protocol's gRPC messages and the typed requests and responses of the data plane.

The gRPC door only translates, here: a ``ModelInferRequest`` (data in ``raw_input_contents`` or in each input's
typed ``contents``) becomes an :class:`~app.serving.v2.messages.InferenceRequest`, decoded by the same
:mod:`app.serving.v2.tensors` functions as REST; an :class:`~app.serving.v2.messages.InferenceResponse` becomes
a ``ModelInferResponse`` with every output in ``raw_output_contents``, as Triton answers (tritonclient's
``InferResult.as_numpy`` reads numeric outputs only from there). :func:`grpc_status` maps the service's errors
to gRPC status codes as Triton maps its own.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from app.serving.errors import BadRequest, ServingError
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import triton_model_config_pb2 as config_pb
from app.serving.v2.messages import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    ModelMetadata,
    Parameter,
    RequestedOutput,
    ServerMetadata,
    TensorData,
)
from app.serving.v2.tensors import (
    bytes_tensor,
    check_datatype,
    check_element_limit,
    check_unique_names,
    element_count,
    tensor_from_array,
    tensor_from_raw,
    tensor_to_raw,
)

__all__ = [
    "grpc_status",
    "infer_request_from_grpc",
    "infer_response_to_grpc",
    "model_metadata_to_grpc",
    "parameters_from_grpc",
    "parameters_to_grpc",
    "server_metadata_to_grpc",
]

# The typed field of InferTensorContents that carries each accepted data type (FP16 and BF16 have none: raw only;
# BOOL's bool_contents is refused with the data type).
_CONTENTS_FIELDS = {
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELD_DTYPES = {
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}

# The gRPC code for each HTTP status the service answers with, as Triton pairs them: its INVALID_ARG is 400
# and INVALID_ARGUMENT, NOT_FOUND 404 and NOT_FOUND, UNAVAILABLE 503 and UNAVAILABLE, INTERNAL 500 and INTERNAL.
_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,  # what gRPC itself answers for a message over its size limit
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def infer_request_from_grpc(message: pb.ModelInferRequest, *, max_elements: int) -> InferenceRequest:
    """Read a ``ModelInferRequest``, decoding every input's data (the model name and version stay on it).

    Args:
        message: the request as received.
        max_elements: the most tensor elements the request's inputs may have in all.

    Raises:
        BadRequest: the request is not a valid inference request; the message names the input or field.
        PayloadTooLarge: the inputs have more than ``max_elements`` elements.
    """
    if not message.inputs:
        raise BadRequest("the request has no inputs; a request needs at least one input")
    check_unique_names("input", [tensor.name for tensor in message.inputs])
    check_element_limit([(tensor.name, tuple(tensor.shape)) for tensor in message.inputs], max_elements)
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(
            f"the request has {len(message.inputs)} inputs but {len(raw)} raw_input_contents; "
            "raw contents need one entry per input, in the order of the inputs"
        )
    inputs = tuple(
        InputTensor(
            tensor.name,
            tensor.datatype,
            tuple(tensor.shape),
            _input_data(tensor, raw[index] if raw else None),
            parameters_from_grpc(tensor.parameters),
        )
        for index, tensor in enumerate(message.inputs)
    )
    outputs = tuple(_requested_output(output) for output in message.outputs)
    check_unique_names("output", [output.name for output in outputs])
    return InferenceRequest(inputs, outputs, message.id or None, parameters_from_grpc(message.parameters))


def infer_response_to_grpc(response: InferenceResponse) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` with every output's data in ``raw_output_contents``, in the outputs' order."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    parameters_to_grpc(response.parameters, message.parameters)
    for output in response.outputs:
        message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        message.raw_output_contents.append(tensor_to_raw(output.data))
    return message


def model_metadata_to_grpc(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """The ``ModelMetadataResponse`` for ``metadata``."""
    message = pb.ModelMetadataResponse(name=metadata.name, versions=metadata.versions, platform=metadata.platform)
    for tensor in metadata.inputs:
        message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    for tensor in metadata.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    return message


def model_config_to_grpc(config: Mapping[str, Any]) -> config_pb.ModelConfigResponse:
    """Triton's model configuration, as :meth:`~app.serving.v2.service.InferenceService.model_config` writes it
    in JSON (Triton's JSON form of the message), as the ``ModelConfig`` RPC's answer."""
    return config_pb.ModelConfigResponse(config=json_format.ParseDict(config, config_pb.ModelConfig()))


def server_metadata_to_grpc(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    """The ``ServerMetadataResponse`` for ``metadata``."""
    return pb.ServerMetadataResponse(name=metadata.name, version=metadata.version, extensions=metadata.extensions)


def parameters_from_grpc(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Parameter]:
    """Plain values of a protobuf parameter map; a parameter with no value set is left out."""
    values: dict[str, Parameter] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def parameters_to_grpc(values: Mapping[str, Parameter], parameters: MutableMapping[str, Any]) -> None:
    """Fill a protobuf parameter map from plain values (ints as int64, floats as double)."""
    for key, value in values.items():
        parameter = parameters[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        else:
            parameter.string_param = value


def grpc_status(error: ServingError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details for a service error (unknown statuses: INTERNAL)."""
    return _GRPC_CODES.get(error.status_code, grpc.StatusCode.INTERNAL), error.message


def _input_data(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> TensorData:
    name, datatype, shape = tensor.name, tensor.datatype, tuple(tensor.shape)
    check_datatype(name, datatype)
    if "shared_memory_region" in tensor.parameters:
        raise BadRequest(f"input '{name}': the shared memory extension is not supported; send the data in the request")
    if raw is not None:
        if tensor.HasField("contents"):
            raise BadRequest(f"input '{name}' sets 'contents' although the request uses raw_input_contents")
        return tensor_from_raw(name, datatype, shape, raw)
    expected = _CONTENTS_FIELDS.get(datatype)
    if expected is None:
        raise BadRequest(f"input '{name}': {datatype} data can only be sent in raw_input_contents")
    present = [field.name for field, _ in tensor.contents.ListFields()]
    if any(field != expected for field in present):
        wrong = next(field for field in present if field != expected)
        raise BadRequest(f"input '{name}': its data is in '{wrong}' but {datatype} elements go in '{expected}'")
    if not present and element_count(name, shape) > 0:
        raise BadRequest(f"input '{name}' has no data: set its contents or the request's raw_input_contents")
    if datatype == "BYTES":
        return bytes_tensor(name, shape, tensor.contents.bytes_contents)
    values = np.array(getattr(tensor.contents, expected), dtype=_FIELD_DTYPES[expected])
    return tensor_from_array(name, datatype, shape, values)


def _requested_output(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> RequestedOutput:
    name = output.name
    if not name:
        raise BadRequest("a requested output has no name")
    if "shared_memory_region" in output.parameters:
        raise BadRequest(f"output '{name}': the shared memory extension is not supported")
    parameters = parameters_from_grpc(output.parameters)
    count = 0
    if "classification" in output.parameters:  # Triton's grpc_utils.cc: an int64_param >= 1
        if output.parameters["classification"].WhichOneof("parameter_choice") != "int64_param":
            raise BadRequest(f"output '{name}': 'classification' must be an int64_param")
        count = output.parameters["classification"].int64_param
        if count < 1:
            raise BadRequest(f"output '{name}': 'classification' must be >= 1, got {count}")
    return RequestedOutput(name, None, count, parameters)
