"""gRPC ``ModelInferRequest`` messages for the v2 fuzz tests: a drawn request with raw or typed contents, then
mutated in its fields and, now and then, in its serialized bytes (see :mod:`tests.serving.v2.fuzz_strategies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from tests.serving.v2.fuzz_strategies import (
    MODEL,
    TENSOR_MUTATIONS,
    Case,
    plain_output,
    request_parameters,
    requested_outputs,
    tensor_lists,
    valid_tensor,
)

__all__ = ["GrpcCase", "grpc_cases"]


@dataclass
class GrpcCase(Case):
    message: pb.ModelInferRequest = field(default_factory=pb.ModelInferRequest)
    wire: bytes | None = None  # the message's bytes, damaged, to send as they are (None: send the message)


def grpc_cases(kind: str) -> st.SearchStrategy[GrpcCase]:
    """``ModelInferRequest`` messages: ``model`` (the model's own inputs: for the server) or ``any`` (any tensors:
    for the converter)."""
    return _grpc_case(kind)


@st.composite
def _grpc_case(draw: st.DrawFn, kind: str) -> GrpcCase:
    model_inputs = kind.startswith("model")
    tensors = draw(tensor_lists(kind))
    raw = draw(st.booleans()) if len(tensors) == 1 else all(t.binary for t in tensors)
    for tensor in tensors:
        tensor.binary = raw
    outputs = [o for o in draw(requested_outputs()) if plain_output(o)]
    for output in outputs:
        output.get("parameters", {}).pop("binary_data", None)
    case = GrpcCase(tensors, outputs, draw(request_parameters()))
    case.parameters.pop("binary_data_output", None)
    if not all(valid_tensor(t, model_inputs, grpc=True) for t in tensors):
        case.mutated("not a valid request as drawn")
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        draw(st.sampled_from(TENSOR_MUTATIONS))(draw, case)
    case.message = _message(case)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        draw(st.sampled_from(_MESSAGE_MUTATIONS))(draw, case)
    if model_inputs and draw(st.integers(0, 5)) == 0:
        _damage_wire(draw, case)
    return case


def _damage_wire(draw: st.DrawFn, case: GrpcCase) -> None:
    """The serialized message with a byte changed, bytes cut off, or bytes added: it may no longer parse."""
    wire = bytearray(case.message.SerializeToString())
    how = draw(st.sampled_from(["flip", "cut", "append"]))
    if how == "flip" and wire:
        wire[draw(st.integers(0, len(wire) - 1))] ^= draw(st.integers(1, 255))
    elif how == "cut" and wire:
        del wire[draw(st.integers(0, len(wire) - 1)) :]
    else:
        wire += draw(st.binary(min_size=1, max_size=8))
    case.wire = bytes(wire)
    case.mutated(f"wire bytes: {how}")


_CONTENTS = {
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
    "BOOL": "bool_contents",
}


def _message(case: GrpcCase) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL, id="fuzz")
    for key, value in case.parameters.items():
        _set_parameter(message.parameters[key], value)
    for tensor in case.tensors:
        item = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=[_int64(d) for d in tensor.shape])
        if tensor.binary:
            message.raw_input_contents.append(tensor.raw())
        elif tensor.wire in _CONTENTS:
            field_name = _CONTENTS[tensor.wire]
            values = tensor.values if isinstance(tensor.values, list) else tensor.values.tolist()
            if field_name == "bool_contents":
                values = [bool(v) for v in values]
            getattr(item.contents, field_name).extend(values)
    for output in case.outputs:
        requested = message.outputs.add(name=output["name"])
        for key, value in output.get("parameters", {}).items():
            _set_parameter(requested.parameters[key], value)
    return message


def _int64(value: int) -> int:
    return max(-(2**63), min(2**63 - 1, value))


def _set_parameter(parameter: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = _int64(value)
    elif isinstance(value, float):
        parameter.double_param = value
    elif isinstance(value, str):
        parameter.string_param = value


def _raw_count(draw: st.DrawFn, case: GrpcCase) -> None:
    raw = case.message.raw_input_contents
    if raw and draw(st.booleans()):
        del raw[-1]
    else:
        raw.append(draw(st.binary(max_size=16)))
    case.mutated("raw_input_contents count", breaks=0 < len(raw) != len(case.message.inputs))


def _raw_size(draw: st.DrawFn, case: GrpcCase) -> None:
    raw = case.message.raw_input_contents
    if not raw:
        return
    index = draw(st.integers(0, len(raw) - 1))
    if raw[index] and draw(st.booleans()):
        raw[index] = raw[index][: -draw(st.integers(1, len(raw[index])))]
    else:
        raw[index] = raw[index] + draw(st.binary(min_size=1, max_size=8))
    case.mutated("raw_input_contents size")


def _contents_and_raw(draw: st.DrawFn, case: GrpcCase) -> None:
    item = draw(st.sampled_from(list(case.message.inputs)))
    field_name = draw(st.sampled_from(sorted(set(_CONTENTS.values()))))
    values = {"bytes_contents": [b"x"], "bool_contents": [True], "fp32_contents": [0.5]}.get(field_name, [1])
    getattr(item.contents, field_name).extend(values)
    case.mutated(f"contents {field_name}", breaks=bool(case.message.raw_input_contents))


def _grpc_parameter(draw: st.DrawFn, case: GrpcCase) -> None:
    owner = draw(st.sampled_from(["request", "input", "output"]))
    if owner == "request":
        parameters = case.message.parameters
    elif owner == "input":
        parameters = draw(st.sampled_from(list(case.message.inputs))).parameters
    elif case.message.outputs:
        parameters = draw(st.sampled_from(list(case.message.outputs))).parameters
    else:
        return
    key = draw(st.sampled_from(["collapsed", "classification", "binary_data_size", "shared_memory_region", "z"]))
    parameter = parameters[key]
    value = draw(st.sampled_from([True, False, 0, -1, 3, 2**62, 0.5, "", "true", None]))
    if value is not None:
        _set_parameter(parameter, value)  # None: a parameter with nothing set
    case.mutated(f"{owner} parameter {key}={value!r}")


def _grpc_output(draw: st.DrawFn, case: GrpcCase) -> None:
    name = draw(st.sampled_from(["logits", "probabilities", "", "nope", "logits"]))
    case.message.outputs.add(name=name)
    case.mutated(f"output {name!r}")


def _model(draw: st.DrawFn, case: GrpcCase) -> None:
    case.message.model_name = draw(st.sampled_from(["", "nope", MODEL, MODEL.upper()]))
    case.message.model_version = draw(st.sampled_from(["", "1", "2", "latest"]))
    case.mutated(f"model {case.message.model_name!r} version {case.message.model_version!r}")


_MESSAGE_MUTATIONS = [_raw_count, _raw_size, _contents_and_raw, _grpc_parameter, _grpc_output, _model]
