"""The protocol's REST bodies: JSON inference requests (with Triton's binary tensor data) in, responses out.

:func:`parse_infer_request` turns the body of ``POST /v2/models/{name}/infer`` into an
:class:`~app.serving.v2.messages.InferenceRequest`; :func:`encode_infer_response` turns the answer into a
body, appending the outputs that the request asked for as binary data after the JSON header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.serving.errors import BadRequest
from app.serving.v2.binary import INFERENCE_HEADER_CONTENT_LENGTH, split_body
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
    check_element_limit,
    check_unique_names,
    describe,
    tensor_from_json,
    tensor_from_raw,
    tensor_to_json,
    tensor_to_raw,
)

__all__ = [
    "EncodedBody",
    "encode_infer_response",
    "model_metadata_json",
    "parse_infer_request",
    "server_metadata_json",
]

_SHARED_MEMORY = "shared_memory_region"


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A response body, and the header length to send when binary data follows the JSON."""

    body: bytes
    header_length: int | None  # the Inference-Header-Content-Length value; None: the body is all JSON

    @property
    def content_type(self) -> str:
        """``application/json``, or ``application/octet-stream`` when binary data follows the JSON (as Triton)."""
        return "application/json" if self.header_length is None else "application/octet-stream"

    @property
    def headers(self) -> dict[str, str]:
        """The headers that describe the body's layout."""
        headers = {"Content-Type": self.content_type}
        if self.header_length is not None:
            headers[INFERENCE_HEADER_CONTENT_LENGTH] = str(self.header_length)
        return headers


def parse_infer_request(body: bytes, header_length: str | None, *, max_elements: int) -> InferenceRequest:
    """Read an inference request body, decoding every input's data.

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header as sent, or None when absent.
        max_elements: the most tensor elements the request's inputs may have in all.

    Raises:
        BadRequest: the body is not a valid inference request; the message names the input or field.
        PayloadTooLarge: the inputs have more than ``max_elements`` elements.
    """
    json_part, binary = split_body(body, header_length)
    document = _object("the request", _load_json(json_part, header_length))
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {describe(request_id)}")
    parameters = _parameters("the request", document.get("parameters"))
    if "binary_data_output" in parameters and not isinstance(parameters["binary_data_output"], bool):
        raise BadRequest("request parameter 'binary_data_output' must be a boolean")
    raw_inputs = _list("'inputs'", document.get("inputs"), required=True)
    if not raw_inputs:
        raise BadRequest("'inputs' is empty; a request needs at least one input")
    headers = [_input_header(i, item) for i, item in enumerate(raw_inputs)]
    check_unique_names("input", [header.name for header in headers])
    check_element_limit([(header.name, header.shape) for header in headers], max_elements)
    inputs = []
    offset = 0
    for header in headers:
        if header.binary_data_size is None:
            if "data" not in header.item:
                raise BadRequest(f"input '{header.name}' has neither 'data' nor a 'binary_data_size' parameter")
            data = tensor_from_json(header.name, header.datatype, header.shape, header.item["data"])
        else:
            data, offset = _binary_input(header, binary, offset, header_length)
        inputs.append(InputTensor(header.name, header.datatype, header.shape, data, header.parameters))
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes after the JSON header belong to no input; the inputs' "
            f"'binary_data_size' parameters add up to {offset}"
        )
    outputs = tuple(_requested_output(i, item) for i, item in enumerate(_list("'outputs'", document.get("outputs"))))
    check_unique_names("output", [output.name for output in outputs])
    return InferenceRequest(tuple(inputs), outputs, request_id or None, parameters)  # perf_analyzer sends "id": ""


def encode_infer_response(response: InferenceResponse, request: InferenceRequest) -> EncodedBody:
    """The body of an inference answer: outputs asked for as binary data follow the JSON header, in order.

    An output is sent as binary data when its requested output says ``binary_data: true``, or says nothing and
    the request's ``binary_data_output`` parameter is true.
    """
    requested = {output.name: output for output in request.outputs}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in response.outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        wanted = requested.get(output.name)
        if wanted is not None and wanted.binary_data is not None:
            binary = wanted.binary_data
        else:
            binary = request.binary_data_output
        if binary:
            blob = tensor_to_raw(output.data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor_to_json(output.data)
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        document["model_version"] = response.model_version
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = dict(response.parameters)
    document["outputs"] = outputs
    header = orjson.dumps(document)  # outputs are finite: the network's inputs were checked, its map is finite
    if not blobs:
        return EncodedBody(header, None)
    return EncodedBody(b"".join([header, *blobs]), len(header))


def model_metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    """The JSON body of ``GET /v2/models/{name}`` (with ``parameters`` when the metadata has any)."""
    body: dict[str, Any] = {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs],
    }
    if metadata.parameters:
        body["parameters"] = dict(metadata.parameters)
    return body


def server_metadata_json(metadata: ServerMetadata) -> dict[str, Any]:
    """The JSON body of ``GET /v2``."""
    return {"name": metadata.name, "version": metadata.version, "extensions": list(metadata.extensions)}


def _load_json(header: memoryview, header_length: str | None) -> Any:
    try:
        document = json.loads(bytes(header))
        unpaired = _SURROGATE_IN_JSON.search(header) is not None and _holds_surrogate(document)
    except UnicodeDecodeError:
        raise BadRequest("the request's JSON is not UTF-8") from None
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and header_length is None:
            hint = f"; binary data after the JSON needs its length in the {INFERENCE_HEADER_CONTENT_LENGTH} header"
        raise BadRequest(f"the request is not valid JSON: {exc}{hint}") from None
    except RecursionError:
        raise BadRequest("the request's JSON is nested too deeply") from None
    if unpaired:  # json.loads lets them through; no UTF-8 (an answer, a log line) can carry them
        raise BadRequest(
            "the request's JSON has a string with a lone surrogate (\\ud800 to \\udfff, unpaired): strings must "
            "be Unicode text"
        )
    return document


# A surrogate in JSON text: a \uD800-\uDFFF escape, or its UTF-8-like bytes (json.loads passes both through).
# A pair of escapes is one character once loaded; only what remains unpaired is refused.
_SURROGATE_IN_JSON = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_surrogate(value: Any) -> bool:
    """Whether a loaded JSON value has a string (or key) with an unpaired surrogate, which no UTF-8 can carry."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_holds_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_surrogate(key) or _holds_surrogate(item) for key, item in value.items())
    return False


@dataclass(frozen=True, slots=True)
class _InputHeader:
    """What the JSON says about one input, checked before any input's data is read."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    parameters: dict[str, Parameter]
    binary_data_size: int | None  # None: the data is in the JSON
    item: Mapping[str, Any]  # the input's JSON object


def _input_header(index: int, value: Any) -> _InputHeader:
    item = _object(f"inputs[{index}]", value)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{index}] needs a 'name' that is a non-empty string")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(dim) is int for dim in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of integers, got {json.dumps(shape)}")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise BadRequest(f"input '{name}': 'datatype' must be a string such as \"FP32\", got {json.dumps(datatype)}")
    parameters = _parameters(f"input '{name}'", item.get("parameters"))
    if _SHARED_MEMORY in parameters:
        raise BadRequest(f"input '{name}': the shared memory extension is not supported; send the data in the body")
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise BadRequest(f"input '{name}': 'binary_data_size' must be a whole number of bytes, got {size!r}")
    return _InputHeader(name, tuple(shape), datatype, parameters, size if type(size) is int else None, item)


def _binary_input(
    header: _InputHeader, binary: memoryview, offset: int, header_length: str | None
) -> tuple[TensorData, int]:
    """Decode an input's binary data, which starts at ``offset``; return it and where the next input's starts."""
    name, size = header.name, header.binary_data_size or 0
    if "data" in header.item:
        raise BadRequest(f"input '{name}' has both 'data' and a 'binary_data_size' parameter; send one or the other")
    if offset + size > len(binary):
        hint = f" (no {INFERENCE_HEADER_CONTENT_LENGTH} header was sent)" if header_length is None else ""
        raise BadRequest(
            f"input '{name}': 'binary_data_size' is {size} bytes but only {len(binary) - offset} bytes of binary "
            f"data remain after the JSON header{hint}"
        )
    return tensor_from_raw(name, header.datatype, header.shape, binary[offset : offset + size]), offset + size


def _requested_output(index: int, item: Any) -> RequestedOutput:
    item = _object(f"outputs[{index}]", item)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"outputs[{index}] needs a 'name' that is a non-empty string")
    parameters = _parameters(f"output '{name}'", item.get("parameters"))
    if _SHARED_MEMORY in parameters:
        raise BadRequest(f"output '{name}': the shared memory extension is not supported")
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise BadRequest(f"output '{name}': 'binary_data' must be a boolean, got {binary!r}")
    count = parameters.get("classification", 0)
    if type(count) is not int or count < 0 or ("classification" in parameters and count == 0):
        raise BadRequest(f"output '{name}': 'classification' must be an integer >= 1, got {count!r}")
    return RequestedOutput(name, binary, count, parameters)


def _parameters(owner: str, value: Any) -> dict[str, Parameter]:
    if value is None:
        return {}
    parameters = _object(f"'parameters' of {owner}", value)
    for key, item in parameters.items():
        if not isinstance(item, bool | int | float | str):
            raise BadRequest(f"parameter '{key}' of {owner} must be a boolean, number or string, got {describe(item)}")
    return parameters


def _object(what: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {describe(value)}")
    return value


def _list(what: str, value: Any, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be a list, got {'nothing' if value is None else describe(value)}")
    return value
