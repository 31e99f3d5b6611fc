"""Fuzzing the REST inference body: Triton's binary tensor data extension and BYTES tensors, in JSON and binary.

Each target runs through the real parser (:func:`~app.serving.v2.rest.parse_infer_request`) and through the
real app (one per module, in process: :mod:`tests.serving.v2.fuzz_harness`). Examples are valid requests with
up to a few mutations (:mod:`tests.serving.v2.fuzz_strategies`). The property: a 4xx whose JSON body says what
was wrong, or 200 with the model's own answer for what was sent; never a 5xx, never an ERROR or a traceback in
the log, never a hang. ``FOLDSERVE_FUZZ_EXAMPLES`` sets the examples per test (``make fuzz``: 10,000).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import event, given, note

from app.serving.v2.binary import deserialize_bytes_elements
from app.serving.v2.rest import parse_infer_request
from tests.server import free_port
from tests.serving.v2.fuzz_harness import ErrorLog, LiveApp, Reference, check_outputs, live_app, refused_or_decoded
from tests.serving.v2.fuzz_rest import RestCase, rest_cases
from tests.serving.v2.fuzz_strategies import FUZZ_SETTINGS, MAX_IMAGES, MODEL, Tensor

ELEMENT_LIMIT = MAX_IMAGES * 144
PATHS = [f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveApp, Reference, ErrorLog]]:
    with live_app(tmp_path_factory.mktemp("fuzz-rest"), free_port()) as running:
        yield running


def assert_decoded_as_sent(case: RestCase) -> None:
    """A valid case parses, into exactly the tensors that were drawn."""
    request = parse_infer_request(case.body, case.header_length, max_elements=10**6)
    for tensor, parsed in zip(case.tensors, request.inputs, strict=True):
        assert (parsed.name, parsed.datatype, list(parsed.shape)) == (tensor.name, tensor.datatype, tensor.shape)
        assert_same_values(tensor, parsed.data)


def assert_same_values(tensor: Tensor, data: Any) -> None:
    if isinstance(tensor.values, list):
        assert data == tuple(tensor.values)
        return
    assert isinstance(data, torch.Tensor) and data.dtype == torch.float32
    expected = torch.from_numpy(tensor.values.astype("float32"))
    if tensor.wire == "FP16":
        expected = expected.half().float()
    elif tensor.wire == "BF16":  # sent as the upper half of each float32 (truncated, not rounded)
        expected = torch.from_numpy(((tensor.values.astype("<f4").view("<u4") >> 16) << 16).view("<f4"))
    torch.testing.assert_close(data.reshape(-1), expected, rtol=0, atol=0)


def parse_outcome(case: RestCase) -> None:
    note(f"mutations: {case.mutations}; header length {case.header_length!r}; body {case.body[:300]!r}")
    refused_or_decoded(
        case,
        lambda: parse_infer_request(case.body, case.header_length, max_elements=ELEMENT_LIMIT),
        assert_decoded_as_sent,
    )


@FUZZ_SETTINGS
@given(rest_cases("numeric"))
def test_binary_extension_parser_refuses_or_decodes_as_sent(case: RestCase) -> None:
    parse_outcome(case)


@FUZZ_SETTINGS
@given(rest_cases("bytes"))
def test_bytes_tensors_parser_refuses_or_decodes_as_sent(case: RestCase) -> None:
    parse_outcome(case)


def served_outcome(served: tuple[LiveApp, Reference, ErrorLog], case: RestCase, path: str) -> None:
    app, reference, errors = served
    note(f"mutations: {case.mutations}; header length {case.header_length!r}; body {case.body[:300]!r}")
    headers = {"content-type": b"application/octet-stream"}
    if case.header_length is not None:  # as bytes: a client may send any, the server reads them as latin-1
        headers["inference-header-content-length"] = case.header_length.encode()
    response = app.post(path, case.body, headers)
    event(f"status {response.status_code}{' (valid)' if case.valid else ''}")
    assert errors.take() == []
    if response.status_code != 200:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert isinstance(response.json()["error"], str) and response.json()["error"], response.text
        assert not case.valid, f"a valid request got {response.status_code}: {response.text}"
        return
    assert not case.broken, f"accepted although {case.mutations[0]}"
    request = parse_infer_request(case.body, case.header_length, max_elements=ELEMENT_LIMIT)
    if case.valid:
        assert_decoded_as_sent(case)
    (tensor,) = request.inputs
    document, outputs = read_answer(response.content, response.headers.get("inference-header-content-length"))
    collapsed = request.parameters.get("collapsed", True)
    assert document["model_name"] == MODEL and document["parameters"]["variant"] == (
        "collapsed" if collapsed else "original"
    )
    requested = [{"name": o.name, "parameters": {"classification": o.classification}} for o in request.outputs]
    check_outputs(outputs, requested, reference.logits(tensor))


def read_answer(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[tuple[str, str, list[int], Any]]]:
    """A response's JSON and each output's (name, datatype, shape, flat data), binary outputs decoded."""
    length = int(header_length) if header_length is not None else len(body)
    document = json.loads(body[:length])
    binary, offset, outputs = body[length:], 0, []
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            data = output["data"]
        else:
            blob = binary[offset : offset + size]
            offset += size
            count = 1
            for dim in output["shape"]:
                count *= dim
            data = (
                deserialize_bytes_elements(output["name"], blob, count)
                if output["datatype"] == "BYTES"
                else torch.frombuffer(bytearray(blob), dtype=torch.float32).tolist()
            )
        outputs.append((output["name"], output["datatype"], output["shape"], data))
    assert offset == len(binary), "bytes after the outputs"
    return document, outputs


@FUZZ_SETTINGS
@given(case=rest_cases("model-numeric"), path=...)
def test_binary_extension_served_4xx_or_the_models_answer(
    served: tuple[LiveApp, Reference, ErrorLog], case: RestCase, path: bool
) -> None:
    served_outcome(served, case, PATHS[path])


@FUZZ_SETTINGS
@given(case=rest_cases("model-bytes"), path=...)
def test_bytes_tensors_served_4xx_or_the_models_answer(
    served: tuple[LiveApp, Reference, ErrorLog], case: RestCase, path: bool
) -> None:
    served_outcome(served, case, PATHS[path])
