"""The protocol's REST bodies as pydantic models, for the OpenAPI document only.

The routes encode and decode these bodies with :mod:`app.serving.v2.rest` (no per-request validation through
pydantic); the models here say what those bodies are, so that ``/docs`` and a generated client get them right.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "InferInput",
    "InferOutput",
    "InferParameters",
    "InferRequestBody",
    "InferResponseBody",
    "ModelConfigBody",
    "ModelMetadataBody",
    "RequestedOutput",
    "ServerMetadataBody",
    "TensorMetadataBody",
    "V2ErrorBody",
]

Parameters = dict[str, bool | int | float | str]
Dimension = Annotated[int, Field(ge=0)]


class V2ErrorBody(BaseModel):
    """The body of every error answer under ``/v2``."""

    error: str = Field(description="what was wrong, for people")


class ServerMetadataBody(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadataBody(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension (the batch)")


class ModelMetadataBody(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataBody]
    outputs: list[TensorMetadataBody]
    parameters: dict[str, Any] | None = Field(
        default=None, description="how an image becomes the network's input: size, mean, std; and the labels"
    )


class ModelConfigBody(BaseModel):
    """Triton's model configuration (the fields perf_analyzer reads)."""

    model_config = ConfigDict(extra="allow")

    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="the most images one request may carry")
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any] | None = None


class InferInput(BaseModel):
    name: Literal["input", "image"] = Field(
        description="'input' (FP32 [N, C, H, W], normalised) or 'image' (BYTES [N] or [N, 1], encoded images)"
    )
    shape: list[Dimension] = Field(min_length=1, max_length=4)
    datatype: Literal["FP32", "BYTES"] = Field(description="FP32 for 'input', BYTES for 'image'")
    parameters: Parameters | None = Field(
        default=None, description="binary_data_size: the input's bytes after the JSON header (binary extension)"
    )
    data: list[Any] | None = Field(default=None, description="row-major, flat or nested as the shape")


class RequestedOutput(BaseModel):
    name: Literal["logits", "probabilities"]
    parameters: Parameters | None = Field(
        default=None, description="binary_data: send it as binary data; classification: its top k as strings"
    )


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    collapsed: bool = Field(default=True, description="true: the simplified network; false: the original")
    binary_data_output: bool = Field(default=False, description="every output as binary data (REST only)")


class InferRequestBody(BaseModel):
    """What the schema cannot say, the service checks: the data matches the shape, the shape the model's input
    ([N, C, H, W] of the model metadata, N at most the batch limit), the datatype the input's name."""

    id: str | None = None
    parameters: InferParameters | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = Field(default=None, description="none: logits and probabilities")


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = Field(description="variant: the network that answered, collapsed or original")
    outputs: list[InferOutput]
