"""Fuzzing gRPC ``ModelInfer``: raw_input_contents (count, sizes), typed contents beside or instead of them,
shapes, datatypes, BYTES elements, parameters, requested outputs, model names and versions.

Each example goes through the real converter (:func:`~app.serving.v2.converters.infer_request_from_grpc`) and
through the real app's gRPC server (one per module, on a free loopback port, over a real socket). The property:
INVALID_ARGUMENT, NOT_FOUND (no such model or version) or RESOURCE_EXHAUSTED (over a size limit, as gRPC itself
answers a message over its limit) with details that say why, or OK with the model's own answer; never
INTERNAL or UNKNOWN, never an ERROR or a traceback in the log, never a hang (each call has a deadline).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import event, given, note

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from app.serving.v2.binary import deserialize_bytes_elements
from app.serving.v2.converters import infer_request_from_grpc
from tests.server import free_port
from tests.serving.v2.fuzz_grpc_messages import GrpcCase, grpc_cases
from tests.serving.v2.fuzz_harness import (
    CALL_TIMEOUT_S,
    ErrorLog,
    LiveApp,
    Reference,
    check_outputs,
    live_app,
    refused_or_decoded,
)
from tests.serving.v2.fuzz_strategies import FUZZ_SETTINGS, MAX_IMAGES, MODEL
from tests.serving.v2.test_fuzz_binary import assert_same_values

ELEMENT_LIMIT = MAX_IMAGES * 144
Served = tuple[LiveApp, Reference, ErrorLog, pb_grpc.GRPCInferenceServiceStub, grpc.UnaryUnaryMultiCallable]
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    port = free_port()
    with (
        live_app(tmp_path_factory.mktemp("fuzz-grpc"), port) as (app, reference, errors),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield app, reference, errors, pb_grpc.GRPCInferenceServiceStub(channel), raw_infer(channel)


def raw_infer(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    """ModelInfer with the request's bytes sent as they are."""
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=None,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def describe(case: GrpcCase) -> str:
    text = str(case.message) if case.wire is None else repr(case.wire[:600])
    return f"mutations: {case.mutations}; message: {text[:600]}"


def assert_decoded_as_sent(case: GrpcCase) -> None:
    request = infer_request_from_grpc(case.message, max_elements=10**6)
    for tensor, parsed in zip(case.tensors, request.inputs, strict=True):
        assert (parsed.name, parsed.datatype, list(parsed.shape)) == (tensor.name, tensor.datatype, tensor.shape)
        assert_same_values(tensor, parsed.data)


@FUZZ_SETTINGS
@given(grpc_cases("any"))
def test_model_infer_converter_refuses_or_decodes_as_sent(case: GrpcCase) -> None:
    note(describe(case))
    refused_or_decoded(
        case, lambda: infer_request_from_grpc(case.message, max_elements=ELEMENT_LIMIT), assert_decoded_as_sent
    )


@FUZZ_SETTINGS
@given(grpc_cases("model"))
def test_model_infer_served_refused_or_the_models_answer(served: Served, case: GrpcCase) -> None:
    _, reference, errors, stub, raw = served
    note(describe(case))
    try:
        if case.wire is None:
            response = stub.ModelInfer(case.message, timeout=CALL_TIMEOUT_S)
        else:
            response = raw(case.wire, timeout=CALL_TIMEOUT_S)
            case.message = pb.ModelInferRequest.FromString(case.wire)  # what the server read, for the oracle
    except grpc.RpcError as error:
        event(f"status {error.code().name}")
        assert errors.take() == []
        assert error.code() in REFUSALS, (error.code(), error.details())
        assert error.details(), error.code()
        assert not case.valid, f"a valid request got {error.code().name}: {error.details()}"
        return
    event(f"status OK{' (valid)' if case.valid else ''}")
    assert errors.take() == []
    assert not case.broken, f"accepted although {case.mutations[0]}"
    if case.valid:
        assert_decoded_as_sent(case)
    request = infer_request_from_grpc(case.message, max_elements=ELEMENT_LIMIT)
    (tensor,) = request.inputs
    collapsed = request.parameters.get("collapsed", True)
    assert response.model_name == MODEL and response.model_version == "1" and response.id == case.message.id
    assert response.parameters["variant"].string_param == ("collapsed" if collapsed else "original")
    outputs = []
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        count = int(np.prod(output.shape))
        data = (
            deserialize_bytes_elements(output.name, raw, count)
            if output.datatype == "BYTES"
            else np.frombuffer(raw, dtype="<f4").tolist()
        )
        outputs.append((output.name, output.datatype, list(output.shape), data))
    requested = [{"name": o.name, "parameters": {"classification": o.classification}} for o in request.outputs]
    check_outputs(outputs, requested, reference.logits(tensor))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (pb.ModelInferRequest(model_name="linear").SerializeToString().replace(b"linear", b"line\xff\xfe"), "UTF-8"),
        (pb.ModelInferRequest(model_name=MODEL, id="x" * 20).SerializeToString()[:-5], "corrupt"),
        (b"\xff\xff\xff\xff", "corrupt"),
    ],
    ids=["model-name-not-utf8", "cut-short", "garbage"],
)
def test_a_message_that_does_not_parse_is_invalid_argument(served: Served, wire: bytes, reason: str) -> None:
    """Found by the wire-bytes mutation above: gRPC answered UNKNOWN ("Unexpected <class 'DecodeError'>")."""
    *_, errors, _, raw = served
    with pytest.raises(grpc.RpcError) as refused:
        raw(wire, timeout=CALL_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest message" in refused.value.details()
    assert reason in refused.value.details()
    assert errors.take() == []
