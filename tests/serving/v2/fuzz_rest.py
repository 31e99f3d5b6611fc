"""REST bodies for the v2 fuzz tests: a drawn request as JSON with Triton's binary tensor data, then mutated in
its document, its bytes and its ``Inference-Header-Content-Length`` (see :mod:`tests.serving.v2.fuzz_strategies`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tests.serving.v2.fuzz_strategies import (
    ODD_VALUES,
    TENSOR_MUTATIONS,
    Case,
    plain_output,
    request_parameters,
    requested_outputs,
    tensor_lists,
    valid_tensor,
)

__all__ = ["RestCase", "rest_cases"]


@dataclass
class RestCase(Case):
    body: bytes = b""
    header_length: str | None = None


def rest_cases(kind: str) -> st.SearchStrategy[RestCase]:
    """REST bodies whose inputs are of ``kind``: ``model-numeric`` or ``model-bytes`` (the model's own ``input``
    or ``image``: for the server), ``numeric`` or ``bytes`` (any tensors of those types: for the parser)."""
    return _rest_case(kind)


@st.composite
def _rest_case(draw: st.DrawFn, kind: str) -> RestCase:
    model_inputs = kind.startswith("model")
    tensors = draw(tensor_lists(kind))
    outputs = draw(requested_outputs())
    case = RestCase(tensors, outputs, draw(request_parameters()))
    if not all(valid_tensor(t, model_inputs) for t in tensors) or not all(map(plain_output, outputs)):
        case.mutated("not a valid request as drawn")
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        draw(st.sampled_from(TENSOR_MUTATIONS))(draw, case)
    document = _document(case)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        draw(st.sampled_from(_DOCUMENT_MUTATIONS))(draw, case, document)
    header = json.dumps(document, separators=(",", ":")).encode()
    blob = b"".join(t.raw() for t in case.tensors if t.binary)
    case.body = header + blob
    case.header_length = str(len(header)) if blob else None
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        draw(st.sampled_from(_BODY_MUTATIONS))(draw, case, len(header))
    return case


def _inputs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's inputs that are still objects (a mutation may have replaced any of them)."""
    inputs = document.get("inputs")
    return [item for item in inputs if isinstance(item, dict)] if isinstance(inputs, list) else []


def _document(case: Case) -> dict[str, Any]:
    inputs = []
    for tensor in case.tensors:
        item: dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
        if tensor.binary:
            item["parameters"] = {"binary_data_size": len(tensor.raw())}
        else:
            item["data"] = tensor.json_data()
        inputs.append(item)
    document: dict[str, Any] = {"inputs": inputs}
    if case.outputs:
        document["outputs"] = copy.deepcopy(case.outputs)
    if case.parameters:
        document["parameters"] = dict(case.parameters)
    return document


# Mutations of the JSON document.


def _odd_field(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    """A field of the document, an input or an output set to an odd value, or deleted."""
    targets: list[dict[str, Any]] = [document, *_inputs(document)]
    outputs = document.get("outputs")
    targets += [o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    target = draw(st.sampled_from(targets))
    keys = (
        ["inputs", "outputs", "parameters", "id"]
        if target is document
        else ["name", "shape", "datatype", "data", "parameters"]
    )
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()) and key in target:
        del target[key]
        case.mutated(f"no {key}")
    else:
        target[key] = draw(st.sampled_from(ODD_VALUES))
        case.mutated(f"{key} odd")


def _binary_data_size(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    binary = [i for i in _inputs(document) if isinstance(i.get("parameters"), dict)]
    if not binary:
        return
    parameters = draw(st.sampled_from(binary))["parameters"]
    size = parameters.get("binary_data_size")
    size = size if type(size) is int else 0
    new = draw(st.sampled_from([-1, 1, 4, -4, 2**63 - 1, "8", 1.0, None, True]))
    parameters["binary_data_size"] = size + new if type(new) is int and abs(new) < 100 else new
    case.mutated("binary_data_size", breaks=type(new) is not int or new < 0 or len(binary) == 1)


def _duplicate_input(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    inputs = _inputs(document)
    if inputs and isinstance(inputs[0].get("name"), str) and inputs[0]["name"]:
        document["inputs"].append(copy.deepcopy(inputs[0]))
        case.mutated("duplicate input", breaks=True)


def _shared_memory(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    inputs = _inputs(document)
    if inputs:
        parameters = draw(st.sampled_from(inputs)).setdefault("parameters", {})
        if isinstance(parameters, dict):
            parameters["shared_memory_region"] = "region"
            case.mutated("shared memory", breaks=True)


def _nest_data(draw: st.DrawFn, case: RestCase, document: dict[str, Any]) -> None:
    """JSON data nested as its shape says (still valid: the same elements), or nested and then made ragged."""
    inputs = [
        i
        for i in _inputs(document)
        if isinstance(i.get("data"), list)
        and isinstance(i.get("shape"), list)
        and len(i["shape"]) >= 2
        and all(type(d) is int and d > 0 for d in i["shape"])
        and int(np.prod(i["shape"])) == len(i["data"])
        and not any(isinstance(value, list) for value in i["data"])  # flat: not nested already
    ]
    if not inputs:
        return
    item = draw(st.sampled_from(inputs))
    item["data"] = _nested(item["data"], item["shape"])
    if draw(st.booleans()):
        innermost = item["data"]
        while isinstance(innermost[-1], list):
            innermost = innermost[-1]
        innermost.pop()
        case.mutated("nested data made ragged", breaks=True)


def _nested(values: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) == 1:
        return list(values)
    step = len(values) // shape[0]
    return [_nested(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


_DOCUMENT_MUTATIONS = [_odd_field, _binary_data_size, _duplicate_input, _shared_memory, _nest_data, _nest_data]


# Mutations of the body's bytes and of its header length.


def _header_length(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    length = len(case.body)
    value = draw(
        st.sampled_from(
            [
                "-1",
                f"-{json_length}",
                "abc",
                "",
                "0",
                "1e3",
                f"+{json_length}",
                "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes
                f"{json_length}.0",
                f" {json_length} ",
                f"0{json_length}",
                str(length + 1),
                str(2**64),
                str(json_length - 1),
                str(json_length + 1),
                None,
            ]
        )
    )
    if value == case.header_length:
        return
    if _says(value, json_length) and case.header_length is not None:  # the same length written otherwise
        if not _says(case.header_length, json_length):
            case.mutated(f"header length {value!r} again")  # undoes an earlier mutation: nothing is known
        case.header_length = value
        return
    breaks = value is not None and not (value.isascii() and value.strip().isdigit() and int(value) <= length)
    breaks = breaks or value == "0" or (value is None and case.header_length is not None)
    case.header_length = value
    case.mutated(f"header length {value!r}", breaks=breaks)


def _says(value: str | None, length: int) -> bool:
    """Whether a header value is ``length`` as the service reads it (surrounding spaces, leading zeros)."""
    return value is not None and value.strip().isascii() and value.strip().isdigit() and int(value) == length


def _truncate(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    cut = draw(st.integers(1, max(1, min(len(case.body) - 1, 64))))
    case.body = case.body[:-cut]
    case.mutated(f"{cut} bytes cut off", breaks=True)


def _extra_bytes(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    extra = draw(st.binary(min_size=1, max_size=16))
    case.body += extra
    case.mutated(f"{len(extra)} bytes appended", breaks=case.header_length is not None or bool(extra.strip()))


def _flip_byte(draw: st.DrawFn, case: RestCase, json_length: int) -> None:
    index = draw(st.integers(0, len(case.body) - 1))
    body = bytearray(case.body)
    body[index] ^= draw(st.integers(1, 255))
    case.body = bytes(body)
    case.mutated(f"byte {index} flipped")


_BODY_MUTATIONS = [_header_length, _truncate, _extra_bytes, _flip_byte]
