"""The typed requests and responses of the Open Inference Protocol, whatever door they came through.

REST (:mod:`app.serving.v2.rest`) and gRPC (:mod:`app.serving.v2.converters`) both translate into and out of
these objects, so the data plane behind them sees one shape. Tensors arrive decoded: numeric data as a float32
``torch.Tensor`` of the declared shape (whatever the wire data type was), BYTES data as a flat tuple of
``bytes`` in row-major order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "InputTensor",
    "ModelMetadata",
    "OutputTensor",
    "Parameter",
    "RequestedOutput",
    "ServerMetadata",
    "TensorData",
    "TensorMetadata",
]

Parameter = bool | int | float | str
"""A parameter value: the protocol's bool, int64/uint64, double and string parameters."""

TensorData = torch.Tensor | tuple[bytes, ...]
"""A float32 tensor of the tensor's shape, or the flat row-major elements of a BYTES tensor."""


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One input of a request, its data already decoded and checked against its shape."""

    name: str
    datatype: str  # as the client sent it ("FP32", "UINT8", "BYTES", ...); numeric data is float32 whatever it is
    shape: tuple[int, ...]
    data: TensorData
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """One output a client asks for, with the parameters the service acts on pulled out."""

    name: str
    binary_data: bool | None = None  # REST only: None leaves it to the request's ``binary_data_output``
    classification: int = 0  # the classification extension's top-k count; 0 returns the raw tensor
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One inference request: its inputs, the outputs it wants (empty: all of them), id and parameters."""

    inputs: tuple[InputTensor, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    id: str | None = None
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    @property
    def binary_data_output(self) -> bool:
        """Whether outputs that do not say otherwise go back as binary data (REST's binary extension)."""
        return self.parameters.get("binary_data_output") is True


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output of a response."""

    name: str
    datatype: str  # "FP32" for tensors, "BYTES" for classifications
    shape: tuple[int, ...]
    data: TensorData


@dataclass(frozen=True, slots=True)
class InferenceResponse:
    """The answer to one inference request."""

    model_name: str
    outputs: tuple[OutputTensor, ...]
    model_version: str | None = None
    id: str | None = None
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    """Name, data type and shape of one model input or output; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What the protocol's model metadata endpoint says about one model."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    # REST only (the gRPC message has no field for them): how inputs are prepared, as JSON values
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What the protocol's server metadata endpoint says about the server."""

    name: str
    version: str
    extensions: tuple[str, ...]
