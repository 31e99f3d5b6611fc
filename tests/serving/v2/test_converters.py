"""gRPC messages to typed requests and back (in this process: our stubs only, never tritonclient.grpc's)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch

from app.serving.errors import (
    BadRequest,
    DeadlineExceeded,
    InvalidParameter,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    QueueFull,
    ServingError,
    UnsupportedMediaType,
)
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2.binary import serialize_bytes_elements
from app.serving.v2.converters import (
    grpc_status,
    infer_request_from_grpc,
    infer_response_to_grpc,
    model_metadata_to_grpc,
    parameters_from_grpc,
    parameters_to_grpc,
    server_metadata_to_grpc,
)
from app.serving.v2.messages import (
    InferenceResponse,
    ModelMetadata,
    OutputTensor,
    ServerMetadata,
    TensorMetadata,
)

LIMIT = 10_000


def request_with(*inputs: dict[str, Any], raw: list[bytes] | None = None, **fields: Any) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=raw or [], **fields)
    for tensor in inputs:
        message.inputs.add(**tensor)
    return message


def test_raw_input_contents_decode_in_input_order() -> None:
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    message = request_with(
        {"name": "a", "datatype": "FP32", "shape": [2, 3]},
        {"name": "b", "datatype": "BYTES", "shape": [2]},
        raw=[a.tobytes(), serialize_bytes_elements([b"png", b""])],
        id="9",
    )
    request = infer_request_from_grpc(message, max_elements=LIMIT)
    assert [t.name for t in request.inputs] == ["a", "b"] and request.id == "9"
    torch.testing.assert_close(request.inputs[0].data, torch.from_numpy(a), rtol=0, atol=0)
    assert request.inputs[1].data == (b"png", b"")


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0]),
        ("FP64", "fp64_contents", [0.5, -1.25, 3.0]),
        ("INT8", "int_contents", [-128, 0, 127]),
        ("INT32", "int_contents", [-7, 0, 2**20]),
        ("INT64", "int64_contents", [-(2**40), 0, 5]),
        ("UINT8", "uint_contents", [0, 128, 255]),
        ("UINT64", "uint64_contents", [0, 1, 2**40]),
    ],
)
def test_typed_contents_decode_to_float32(datatype: str, field: str, values: list[float]) -> None:
    message = request_with({"name": "x", "datatype": datatype, "shape": [3], "contents": {field: values}})
    (tensor,) = infer_request_from_grpc(message, max_elements=LIMIT).inputs
    assert isinstance(tensor.data, torch.Tensor) and tensor.data.dtype == torch.float32
    assert tensor.data.tolist() == [float(v) for v in values]


def test_bytes_contents_are_kept() -> None:
    contents = {"bytes_contents": [b"a", b"\xff\xfe"]}
    message = request_with({"name": "s", "datatype": "BYTES", "shape": [1, 2], "contents": contents})
    assert infer_request_from_grpc(message, max_elements=LIMIT).inputs[0].data == (b"a", b"\xff\xfe")


def test_parameters_and_requested_outputs_are_read() -> None:
    message = request_with({"name": "x", "datatype": "FP32", "shape": [1], "contents": {"fp32_contents": [1.0]}})
    message.parameters["priority"].uint64_param = 3
    message.parameters["tag"].string_param = "a"
    message.parameters["scale"].double_param = 0.5
    message.parameters["flag"].bool_param = True
    message.parameters["empty"].CopyFrom(pb.InferParameter())
    wanted = message.outputs.add(name="probabilities")
    wanted.parameters["classification"].int64_param = 3
    message.outputs.add(name="logits")
    request = infer_request_from_grpc(message, max_elements=LIMIT)
    assert request.parameters == {"priority": 3, "tag": "a", "scale": 0.5, "flag": True}
    assert [(o.name, o.classification, o.binary_data) for o in request.outputs] == [
        ("probabilities", 3, None),
        ("logits", 0, None),
    ]
    assert request.id is None


def test_response_puts_every_output_in_raw_output_contents() -> None:
    logits = torch.tensor([[1.5, -2.0, 0.25]])
    response = InferenceResponse(
        "m",
        (
            OutputTensor("logits", "FP32", (1, 3), logits),
            OutputTensor("probabilities", "BYTES", (1, 2), (b"1.500000:0:a", b"0.250000:2:c")),
        ),
        model_version="1",
        id="42",
        parameters={"n": 2, "ok": True, "x": 0.5, "s": "t"},
    )
    message = infer_response_to_grpc(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "1", "42")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("logits", "FP32", [1, 3]),
        ("probabilities", "BYTES", [1, 2]),
    ]
    assert not any(o.HasField("contents") for o in message.outputs)
    assert np.frombuffer(message.raw_output_contents[0], dtype="<f4").tolist() == [1.5, -2.0, 0.25]
    assert message.raw_output_contents[1] == b"\x0c\0\0\x001.500000:0:a\x0c\0\0\x000.250000:2:c"
    assert parameters_from_grpc(message.parameters) == {"n": 2, "ok": True, "x": 0.5, "s": "t"}
    assert message.parameters["n"].WhichOneof("parameter_choice") == "int64_param"


def test_parameters_round_trip() -> None:
    values = {"b": False, "i": -3, "f": 2.5, "s": ""}
    message = pb.ModelInferResponse()
    parameters_to_grpc(values, message.parameters)
    assert parameters_from_grpc(message.parameters) == values


def test_metadata_messages() -> None:
    metadata = ModelMetadata(
        "m",
        ("1",),
        "pytorch_safetensors",
        (TensorMetadata("input", "FP32", (-1, 1, 28, 28)),),
        (TensorMetadata("logits", "FP32", (-1, 10)), TensorMetadata("probabilities", "FP32", (-1, 10))),
    )
    message = model_metadata_to_grpc(metadata)
    assert (message.name, list(message.versions), message.platform) == ("m", ["1"], "pytorch_safetensors")
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [("input", "FP32", [-1, 1, 28, 28])]
    assert [t.name for t in message.outputs] == ["logits", "probabilities"]
    server = server_metadata_to_grpc(ServerMetadata("foldserve", "0.1.0", ("binary_tensor_data", "classification")))
    assert (server.name, server.version, list(server.extensions)) == (
        "foldserve",
        "0.1.0",
        ["binary_tensor_data", "classification"],
    )


def _fp32(name: str = "x", shape: tuple[int, ...] = (2,), **fields: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": list(shape), **fields}


BAD_MESSAGES: list[tuple[str, pb.ModelInferRequest, str]] = [
    ("no inputs", request_with(), "the request has no inputs"),
    (
        "raw count",
        request_with(_fp32("a"), _fp32("b"), raw=[b"\0" * 8]),
        "the request has 2 inputs but 1 raw_input_contents; raw contents need one entry per input",
    ),
    (
        "raw and contents",
        request_with(_fp32(contents={"fp32_contents": [1, 2]}), raw=[b"\0" * 8]),
        "input 'x' sets 'contents' although the request uses raw_input_contents",
    ),
    (
        "raw size",
        request_with(_fp32(), raw=[b"\0" * 6]),
        "input 'x': FP32 shape [2] needs 8 bytes (2 elements of 4), got 6",
    ),
    (
        "raw nan",
        request_with(_fp32(), raw=[np.array([np.inf, 0], dtype="<f4").tobytes()]),
        "input 'x': element 0 is inf; tensor data must be finite",
    ),
    (
        "wrong field",
        request_with(_fp32(contents={"int_contents": [1, 2]})),
        "input 'x': its data is in 'int_contents' but FP32 elements go in 'fp32_contents'",
    ),
    (
        "contents count",
        request_with(_fp32(contents={"fp32_contents": [1, 2, 3]})),
        "input 'x': shape [2] needs 2 elements, got 3",
    ),
    (
        "contents nan",
        request_with(_fp32(contents={"fp32_contents": [1, float("nan")]})),
        "input 'x': element 1 is nan; tensor data must be finite",
    ),
    (
        "int8 range",
        request_with({"name": "x", "datatype": "INT8", "shape": [2], "contents": {"int_contents": [5, 200]}}),
        "input 'x': element 1 is 200, outside INT8's range [-128, 127]",
    ),
    (
        "uint8 range",
        request_with({"name": "x", "datatype": "UINT8", "shape": [1], "contents": {"uint_contents": [256]}}),
        "input 'x': element 0 is 256, outside UINT8's range [0, 255]",
    ),
    ("no data", request_with(_fp32()), "input 'x' has no data: set its contents or the request's raw_input_contents"),
    (
        "fp16 contents",
        request_with({"name": "h", "datatype": "FP16", "shape": [1], "contents": {"fp32_contents": [1]}}),
        "input 'h': FP16 data can only be sent in raw_input_contents",
    ),
    (
        "bool",
        request_with({"name": "b", "datatype": "BOOL", "shape": [1], "contents": {"bool_contents": [True]}}),
        "input 'b': BOOL tensors are not accepted",
    ),
    (
        "unknown datatype",
        request_with({"name": "q", "datatype": "fp32", "shape": [1], "contents": {"fp32_contents": [1]}}),
        "input 'q': unknown datatype 'fp32'",
    ),
    (
        "negative dim",
        request_with(_fp32(shape=(2, -1)), raw=[b""]),
        "input 'x': shape [2, -1] has a negative dimension",
    ),
    ("duplicate input", request_with(_fp32(), _fp32(), raw=[b"\0" * 8] * 2), "input 'x' appears more than once"),
    (
        "bytes count",
        request_with({"name": "s", "datatype": "BYTES", "shape": [2], "contents": {"bytes_contents": [b"a"]}}),
        "input 's': shape [2] needs 2 elements, got 1",
    ),
    (
        "shared memory",
        request_with(_fp32(parameters={"shared_memory_region": pb.InferParameter(string_param="r")})),
        "input 'x': the shared memory extension is not supported",
    ),
]


@pytest.mark.parametrize(("message", "expected"), [case[1:] for case in BAD_MESSAGES], ids=[c[0] for c in BAD_MESSAGES])
def test_bad_message_is_refused_with_a_clear_message(message: pb.ModelInferRequest, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        infer_request_from_grpc(message, max_elements=LIMIT)
    assert type(info.value) is BadRequest
    assert expected in info.value.message


def _with_output(name: str, **parameters: pb.InferParameter) -> pb.ModelInferRequest:
    message = request_with(_fp32(contents={"fp32_contents": [1, 2]}))
    output = message.outputs.add(name=name)
    for key, value in parameters.items():
        output.parameters[key].CopyFrom(value)
    return message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            _with_output("logits", classification=pb.InferParameter(int64_param=0)),
            "'classification' must be >= 1, got 0",
        ),
        (
            _with_output("logits", classification=pb.InferParameter(string_param="3")),
            "output 'logits': 'classification' must be an int64_param",
        ),
        (_with_output(""), "a requested output has no name"),
        (
            _with_output("logits", shared_memory_region=pb.InferParameter(string_param="r")),
            "output 'logits': the shared memory extension is not supported",
        ),
    ],
    ids=["classification 0", "classification string", "no name", "shared memory"],
)
def test_bad_requested_output_is_refused(message: pb.ModelInferRequest, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        infer_request_from_grpc(message, max_elements=LIMIT)
    assert expected in info.value.message


def test_duplicate_requested_output_is_refused() -> None:
    message = _with_output("logits")
    message.outputs.add(name="logits")
    with pytest.raises(BadRequest, match="output 'logits' appears more than once"):
        infer_request_from_grpc(message, max_elements=LIMIT)


def test_too_many_elements_is_payload_too_large() -> None:
    message = request_with(_fp32("a", (4, 4)), _fp32("b", (8,)), raw=[b"", b""])
    with pytest.raises(PayloadTooLarge) as info:
        infer_request_from_grpc(message, max_elements=20)
    assert info.value.message == (
        "the request's inputs have 24 elements ('a' [4, 4], 'b' [8]), more than the 20 a request may carry"
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidParameter("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnsupportedMediaType("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("m"), grpc.StatusCode.NOT_FOUND),
        (PayloadTooLarge("m"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (QueueFull("m"), grpc.StatusCode.UNAVAILABLE),
        (ModelNotReady("m"), grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceeded("m"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ServingError("m"), grpc.StatusCode.INTERNAL),
    ],
)
def test_service_errors_map_to_grpc_codes(error: ServingError, code: grpc.StatusCode) -> None:
    assert grpc_status(error) == (code, "m")
