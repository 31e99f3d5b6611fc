"""REST bodies in and out, made and read by Triton's own HTTP client (tritonclient.http)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient

from app.serving.errors import BadRequest, PayloadTooLarge
from app.serving.v2.messages import InferenceRequest
from app.serving.v2.outputs import infer_response
from app.serving.v2.rest import encode_infer_response, parse_infer_request

LABELS = ["zero", "one", "two", "three", "four"]
LIMIT = 10_000


def body_of(
    inputs: list[httpclient.InferInput], outputs: list[httpclient.InferRequestedOutput] | None = None, **kwargs: Any
) -> tuple[bytes, str | None]:
    """A request body exactly as tritonclient.http would send it, and its Inference-Header-Content-Length."""
    body, header_length = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    return body if isinstance(body, bytes) else body.encode(), None if header_length is None else str(header_length)


def triton_input(name: str, array: np.ndarray, datatype: str, *, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def parse(document: dict[str, Any], *, binary: bytes = b"", max_elements: int = LIMIT) -> InferenceRequest:
    """Parse a hand-written JSON request, with ``binary`` data after it when given."""
    header = json.dumps(document).encode()
    return parse_infer_request(header + binary, str(len(header)) if binary else None, max_elements=max_elements)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_input_decodes_to_the_same_tensor(binary: bool) -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32)
    request = parse_infer_request(*body_of([triton_input("input", x, "FP32", binary=binary)]), max_elements=LIMIT)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", "FP32", (2, 1, 3, 3))
    assert isinstance(tensor.data, torch.Tensor) and tensor.data.dtype == torch.float32
    torch.testing.assert_close(tensor.data, torch.from_numpy(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("datatype", "dtype", "binary"),
    [
        ("UINT8", np.uint8, True),
        ("UINT8", np.uint8, False),
        ("INT32", np.int32, False),
        ("UINT16", np.uint16, True),
        ("INT64", np.int64, True),
        ("FP64", np.float64, False),
        ("FP16", np.float16, True),
    ],
)
def test_numeric_inputs_become_float32_with_the_same_values(datatype: str, dtype: type, binary: bool) -> None:
    x = np.array([[0, 1, 7], [128, 255, 3]]).astype(dtype)
    request = parse_infer_request(*body_of([triton_input("pixels", x, datatype, binary=binary)]), max_elements=LIMIT)
    (tensor,) = request.inputs
    assert tensor.datatype == datatype
    assert isinstance(tensor.data, torch.Tensor) and tensor.data.dtype == torch.float32
    assert tensor.data.tolist() == [[0.0, 1.0, 7.0], [128.0, 255.0, 3.0]]


def test_bf16_binary_input_keeps_its_values() -> None:
    x = np.array([1.5, -2.25, 0.0, 96.0], dtype=np.float32)  # exactly representable in bfloat16
    request = parse_infer_request(*body_of([triton_input("x", x, "BF16", binary=True)]), max_elements=LIMIT)
    assert request.inputs[0].data.tolist() == [1.5, -2.25, 0.0, 96.0]  # type: ignore[union-attr]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_input_keeps_its_elements(binary: bool) -> None:
    x = np.array([[b"png-bytes", b""], [b"\xff\xd8jpeg", b"x" * 300]], dtype=np.object_)
    if not binary:  # JSON carries strings: UTF-8 only
        x = np.array([[b"first", b""], ["caf\u00e9".encode(), b"x" * 300]], dtype=np.object_)
    request = parse_infer_request(*body_of([triton_input("image", x, "BYTES", binary=binary)]), max_elements=LIMIT)
    (tensor,) = request.inputs
    assert tensor.shape == (2, 2)
    assert tensor.data == tuple(x.reshape(-1).tolist())


def test_several_binary_inputs_are_read_in_order() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"one", b"three"], dtype=np.object_)
    c = np.arange(4, dtype=np.uint8)
    inputs = [triton_input("a", a, "FP32", binary=True), triton_input("b", b, "BYTES", binary=True)]
    inputs.append(triton_input("c", c, "UINT8", binary=False))
    request = parse_infer_request(*body_of(inputs), max_elements=LIMIT)
    assert [t.name for t in request.inputs] == ["a", "b", "c"]
    assert request.inputs[0].data.tolist() == a.tolist()  # type: ignore[union-attr]
    assert request.inputs[1].data == (b"one", b"three")
    assert request.inputs[2].data.tolist() == [0.0, 1.0, 2.0, 3.0]  # type: ignore[union-attr]


def test_empty_request_id_is_no_id() -> None:
    request = parse({"id": "", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    assert request.id is None


def test_nested_json_data_following_the_shape_is_accepted() -> None:
    document = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6.5]]}]}
    assert parse(document).inputs[0].data.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]  # type: ignore[union-attr]


def test_request_id_outputs_and_parameters_are_kept() -> None:
    x = np.zeros((1, 4), dtype=np.float32)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=False, class_count=3),
        httpclient.InferRequestedOutput("logits", binary_data=True),
    ]
    body = body_of([triton_input("x", x, "FP32", binary=True)], outputs, request_id="42", parameters={"tag": "a"})
    request = parse_infer_request(*body, max_elements=LIMIT)
    assert request.id == "42"
    assert request.parameters == {"tag": "a"}
    assert [(o.name, o.binary_data, o.classification) for o in request.outputs] == [
        ("probabilities", False, 3),
        ("logits", True, 0),
    ]
    assert not request.binary_data_output


def _answer(request: InferenceRequest, logits: torch.Tensor) -> httpclient.InferResult:
    """Encode the answer to ``request`` and read it back with tritonclient."""
    encoded = encode_infer_response(infer_response(request, logits, LABELS, model_name="m", model_version="1"), request)
    assert encoded.headers["Content-Type"] == encoded.content_type
    if encoded.header_length is not None:
        assert encoded.headers["Inference-Header-Content-Length"] == str(encoded.header_length)
    return httpclient.InferResult.from_response_body(encoded.body, header_length=encoded.header_length)


def test_response_with_binary_and_json_outputs_is_read_by_tritonclient() -> None:
    logits = torch.tensor([[0.5, -1.0, 3.25, 2.0, 0.0], [1.0, 1.0, -2.0, 0.5, 4.0]])
    outputs = [
        httpclient.InferRequestedOutput("logits", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    x = np.zeros((2, 4), dtype=np.float32)
    request = parse_infer_request(*body_of([triton_input("x", x, "FP32", binary=True)], outputs), max_elements=LIMIT)
    result = _answer(request, logits)
    np.testing.assert_array_equal(result.as_numpy("logits"), logits.numpy())
    expected = torch.softmax(logits.double(), dim=1).float().numpy()
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6, atol=0)
    response = result.get_response()
    assert response["model_name"] == "m" and response["model_version"] == "1"
    assert response["outputs"][0]["parameters"] == {"binary_data_size": 40}
    assert "data" in response["outputs"][1] and "parameters" not in response["outputs"][1]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_output_is_read_by_tritonclient(binary: bool) -> None:
    logits = torch.tensor([[0.5, -1.0, 3.25, 2.0, 0.0], [1.0, 1.5, -2.0, 0.5, 4.0]])
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=3)]
    x = np.zeros((2, 4), dtype=np.float32)
    request = parse_infer_request(
        *body_of([triton_input("x", x, "FP32", binary=True)], outputs, request_id="7"), max_elements=LIMIT
    )
    result = _answer(request, logits)
    classes = result.as_numpy("logits")
    assert classes.shape == (2, 3)
    rows = [[c.decode() if isinstance(c, bytes) else c for c in row] for row in classes.tolist()]
    assert rows == [
        ["3.250000:2:two", "2.000000:3:three", "0.500000:0:zero"],
        ["4.000000:4:four", "1.500000:1:one", "1.000000:0:zero"],
    ]
    assert result.get_response()["id"] == "7"
    assert result.get_output("logits")["datatype"] == "BYTES"


def test_no_requested_outputs_returns_all_as_binary_as_tritonclient_asks() -> None:
    x = np.zeros((1, 4), dtype=np.float32)
    request = parse_infer_request(*body_of([triton_input("x", x, "FP32", binary=False)]), max_elements=LIMIT)
    assert request.binary_data_output and request.outputs == ()
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    result = _answer(request, logits)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["logits", "probabilities"]
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    np.testing.assert_array_equal(result.as_numpy("logits"), logits.numpy())


def test_output_binary_data_false_overrides_binary_data_output() -> None:
    document = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
    }
    request = parse(document)
    encoded = encode_infer_response(infer_response(request, torch.zeros(1, 5), LABELS, model_name="m"), request)
    assert encoded.header_length is not None and encoded.content_type == "application/octet-stream"
    header = json.loads(encoded.body[: encoded.header_length])
    assert header["outputs"][0]["data"] == [0.0] * 5
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 20}
    assert "model_version" not in header and "id" not in header


def test_all_json_response_has_no_header_length() -> None:
    request = parse({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    encoded = encode_infer_response(infer_response(request, torch.zeros(1, 5), LABELS, model_name="m"), request)
    assert encoded.header_length is None and encoded.content_type == "application/json"
    assert "Inference-Header-Content-Length" not in encoded.headers
    assert json.loads(encoded.body)["outputs"][0]["data"] == [0.0] * 5


def _input(**overrides: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]} | overrides


def _binary(name: str, shape: list[int], datatype: str, size: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


# Each bad request: the JSON, the binary data after it, the error type and a part of its message.
BAD_REQUESTS: list[tuple[str, Any, bytes, type, str]] = [
    ("not an object", [1, 2], b"", BadRequest, "the request must be a JSON object, got a list"),
    ("no inputs", {"id": "1"}, b"", BadRequest, "'inputs' must be a list, got nothing"),
    ("empty inputs", {"inputs": []}, b"", BadRequest, "'inputs' is empty"),
    ("input not object", {"inputs": [3]}, b"", BadRequest, "inputs[0] must be a JSON object, got int 3"),
    ("no name", {"inputs": [_input(name="")]}, b"", BadRequest, "inputs[0] needs a 'name' that is a non-empty string"),
    ("id not string", {"id": 5, "inputs": [_input()]}, b"", BadRequest, "'id' must be a string, got int 5"),
    ("unknown datatype", {"inputs": [_input(datatype="FP8")]}, b"", BadRequest, "input 'x': unknown datatype 'FP8'"),
    ("bool refused", {"inputs": [_input(datatype="BOOL", data=[True, False])]}, b"", BadRequest, "BOOL tensors"),
    ("fp16 in json", {"inputs": [_input(datatype="FP16")]}, b"", BadRequest, "FP16 data cannot be sent as JSON"),
    ("negative dim", {"inputs": [_input(shape=[-1, 2])]}, b"", BadRequest, "shape [-1, 2] has a negative dimension"),
    ("shape strings", {"inputs": [_input(shape=["2"])]}, b"", BadRequest, "'shape' must be a list of integers"),
    ("too few", {"inputs": [_input(shape=[3])]}, b"", BadRequest, "shape [3] needs 3 elements, 'data' has 2"),
    ("too many", {"inputs": [_input(data=[1, 2, 3])]}, b"", BadRequest, "shape [2] needs 2 elements, 'data' has 3"),
    ("no data", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}, b"", BadRequest, "has neither 'data'"),
    ("data not list", {"inputs": [_input(data="12")]}, b"", BadRequest, "'data' must be a list, got string '12'"),
    (
        "ragged",
        {"inputs": [_input(shape=[2, 2], data=[[1, 2], [3]])]},
        b"",
        BadRequest,
        "nested 'data' is ragged or does not follow shape [2, 2]: found 1 items at depth 1, expected a list of 2",
    ),
    (
        "nested not shape",
        {"inputs": [_input(shape=[3, 2], data=[[1, 2, 3], [4, 5, 6]])]},
        b"",
        BadRequest,
        "found 2 items at depth 0, expected a list of 3",
    ),
    (
        "nan",
        {"inputs": [_input(data=[1.0, float("nan")])]},
        b"",
        BadRequest,
        "element 1 is nan; tensor data must be finite",
    ),
    (
        "inf",
        {"inputs": [_input(data=[float("-inf"), 1])]},
        b"",
        BadRequest,
        "element 0 is -inf; tensor data must be finite",
    ),
    (
        "beyond float32",
        {"inputs": [_input(datatype="FP64", data=[1.0, 1e300])]},
        b"",
        BadRequest,
        "element 1 (1e+300) is beyond float32's range",
    ),
    (
        "bool element",
        {"inputs": [_input(data=[1.0, True])]},
        b"",
        BadRequest,
        "FP32 element 1 is bool True, expected a number",
    ),
    (
        "string element",
        {"inputs": [_input(data=["1", 2])]},
        b"",
        BadRequest,
        "element 0 is string '1', expected a number",
    ),
    ("float for int", {"inputs": [_input(datatype="INT32", data=[1, 2.5])]}, b"", BadRequest, "expected an integer"),
    (
        "uint8 range",
        {"inputs": [_input(datatype="UINT8", data=[255, 256])]},
        b"",
        BadRequest,
        "element 1 is 256, outside UINT8's range [0, 255]",
    ),
    ("uint8 negative", {"inputs": [_input(datatype="UINT8", data=[-1, 0])]}, b"", BadRequest, "element 0 is -1"),
    ("int64 huge", {"inputs": [_input(datatype="INT64", data=[2**70, 0])]}, b"", BadRequest, "outside INT64's range"),
    (
        "bytes not str",
        {"inputs": [_input(datatype="BYTES", data=["a", 1])]},
        b"",
        BadRequest,
        "BYTES element 1 is int 1",
    ),
    ("duplicate input", {"inputs": [_input(), _input()]}, b"", BadRequest, "input 'x' appears more than once"),
    (
        "shared memory",
        {"inputs": [_input(parameters={"shared_memory_region": "r"})]},
        b"",
        BadRequest,
        "shared memory extension is not supported",
    ),
    (
        "parameter object",
        {"inputs": [_input()], "parameters": {"a": {"b": 1}}},
        b"",
        BadRequest,
        "parameter 'a' of the request must be a boolean, number or string, got an object",
    ),
    (
        "binary_data_output not bool",
        {"inputs": [_input()], "parameters": {"binary_data_output": "yes"}},
        b"",
        BadRequest,
        "'binary_data_output' must be a boolean",
    ),
    (
        "duplicate output",
        {"inputs": [_input()], "outputs": [{"name": "logits"}, {"name": "logits"}]},
        b"",
        BadRequest,
        "output 'logits' appears more than once",
    ),
    (
        "classification zero",
        {"inputs": [_input()], "outputs": [{"name": "logits", "parameters": {"classification": 0}}]},
        b"",
        BadRequest,
        "output 'logits': 'classification' must be an integer >= 1, got 0",
    ),
    (
        "classification string",
        {"inputs": [_input()], "outputs": [{"name": "logits", "parameters": {"classification": "3"}}]},
        b"",
        BadRequest,
        "'classification' must be an integer >= 1, got '3'",
    ),
    (
        "binary_data not bool",
        {"inputs": [_input()], "outputs": [{"name": "logits", "parameters": {"binary_data": 1}}]},
        b"",
        BadRequest,
        "output 'logits': 'binary_data' must be a boolean, got 1",
    ),
    (
        "binary size too big",
        {"inputs": [_binary("x", [3], "FP32", 12)]},
        b"\0" * 8,
        BadRequest,
        "input 'x': 'binary_data_size' is 12 bytes but only 8 bytes of binary data remain after the JSON header",
    ),
    (
        "binary size not shape",
        {"inputs": [_binary("x", [2], "FP32", 4)]},
        b"\0" * 4,
        BadRequest,
        "input 'x': FP32 shape [2] needs 8 bytes (2 elements of 4), got 4",
    ),
    (
        "leftover binary",
        {"inputs": [_binary("x", [2], "FP32", 8)]},
        b"\0" * 12,
        BadRequest,
        "4 bytes after the JSON header belong to no input; the inputs' 'binary_data_size' parameters add up to 8",
    ),
    (
        "binary size negative",
        {"inputs": [_binary("x", [2], "FP32", -8)]},
        b"\0" * 8,
        BadRequest,
        "'binary_data_size' must be a whole number of bytes, got -8",
    ),
    (
        "data and binary",
        {"inputs": [_input(parameters={"binary_data_size": 8})]},
        b"\0" * 8,
        BadRequest,
        "input 'x' has both 'data' and a 'binary_data_size' parameter",
    ),
    (
        "binary nan",
        {"inputs": [_binary("x", [2], "FP32", 8)]},
        np.array([1.0, np.nan], dtype="<f4").tobytes(),
        BadRequest,
        "input 'x': element 1 is nan; tensor data must be finite",
    ),
    (
        "bytes cut length",
        {"inputs": [_binary("s", [2], "BYTES", 7)]},
        b"\1\0\0\0a\2\0",
        BadRequest,
        "input 's': BYTES data ends inside the 4-byte length of element 1",
    ),
    (
        "bytes overrun",
        {"inputs": [_binary("s", [1], "BYTES", 6)]},
        b"\x09\0\0\0ab",
        BadRequest,
        "input 's': BYTES element 0 declares 9 bytes but only 2 remain",
    ),
    (
        "bytes extra",
        {"inputs": [_binary("s", [1], "BYTES", 10)]},
        b"\1\0\0\0a\1\0\0\0b",
        BadRequest,
        "input 's': 5 bytes follow the 1 BYTES elements its shape holds",
    ),
    (
        "bytes fewer",
        {"inputs": [_binary("s", [3], "BYTES", 5)]},
        b"\1\0\0\0a",
        BadRequest,
        "input 's': BYTES data holds 1 elements, its shape needs 3",
    ),
]


@pytest.mark.parametrize(
    ("document", "binary", "error", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_with_a_clear_message(document: Any, binary: bytes, error: type, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(document, binary=binary)
    assert type(info.value) is error
    assert message in info.value.message


def test_too_many_elements_is_payload_too_large_before_decoding() -> None:
    document = {"inputs": [_input(shape=[3, 4], data="never read"), _input(name="y", shape=[5], data=[])]}
    with pytest.raises(PayloadTooLarge) as info:
        parse(document, max_elements=16)
    assert info.value.message == (
        "the request's inputs have 17 elements ('x' [3, 4], 'y' [5]), more than the 16 a request may carry"
    )


def test_binary_data_without_header_length_says_the_header_is_missing() -> None:
    header = json.dumps({"inputs": [_binary("x", [1], "FP32", 4)]}).encode()
    with pytest.raises(BadRequest) as info:
        parse_infer_request(header + b"\0\0\0\0", None, max_elements=LIMIT)
    assert info.value.message.endswith(
        "; binary data after the JSON needs its length in the Inference-Header-Content-Length header"
    )
    with pytest.raises(BadRequest) as info:
        parse_infer_request(header, None, max_elements=LIMIT)
    assert info.value.message == (
        "input 'x': 'binary_data_size' is 4 bytes but only 0 bytes of binary data remain after the JSON header "
        "(no Inference-Header-Content-Length header was sent)"
    )


@pytest.mark.parametrize(
    ("header_length", "message"),
    [
        ("abc", "Inference-Header-Content-Length must be a whole number of bytes, got 'abc'"),
        ("-3", "must be a whole number of bytes, got '-3'"),
        ("", "must be a whole number of bytes, got ''"),
        ("0", "must be between 1 and the body's 20 bytes, got 0"),
        ("21", "must be between 1 and the body's 20 bytes, got 21"),
    ],
)
def test_bad_inference_header_content_length_is_refused(header_length: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_infer_request(b'{"inputs": []}' + b"\0" * 6, header_length, max_elements=LIMIT)
    assert type(info.value) is BadRequest and message in info.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "the request is not valid JSON: Expecting value"),
        (b'{"inputs": "\xff"}', "the request's JSON is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "the request's JSON is nested too deeply"),
    ],
    ids=["truncated", "not utf-8", "too deep"],
)
def test_body_that_is_not_json_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_infer_request(body, None, max_elements=LIMIT)
    assert message in info.value.message


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["\ud800"]}]},
        {"id": "\udc00", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
        {"inputs": [{"name": "\ud800", "shape": [1], "datatype": "FP32", "data": [1]}]},
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": [{"name": "a\udbff"}]},
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"\ud800": 1}}]},
    ],
    ids=["bytes-element", "id", "input-name", "output-name", "parameter-key"],
)
def test_a_lone_surrogate_in_a_json_string_is_refused(document: dict[str, Any]) -> None:
    """Found by tests/serving/v2/test_fuzz_binary.py: a BYTES element "\\ud800" (a byte flipped in '\\u001f') was a
    500 (UnicodeEncodeError), and an id or a name with one a 500 whose answer, or error, could not be encoded."""
    with pytest.raises(BadRequest, match="lone surrogate"):
        parse(document)  # json.dumps writes them as \ud800 escapes, as a client would
    header = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")  # and as raw bytes
    with pytest.raises(BadRequest, match="lone surrogate"):
        parse_infer_request(header, None, max_elements=LIMIT)


def test_a_surrogate_pair_is_one_character_and_accepted() -> None:
    document = {
        "id": "\ud83d\ude00",
        "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["\U0001f600"]}],
    }
    request = parse(document)
    assert request.id == "\U0001f600" and request.inputs[0].data == ("\U0001f600".encode(),)
