"""The gRPC stubs cannot drift from the .proto, and the .proto speaks the wire protocol Triton's client speaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from app.serving.v2 import grpc_predict_v2_pb2, triton_model_config_pb2

ROOT = Path(__file__).resolve().parents[3]
PROTO = "app/serving/v2/grpc_predict_v2.proto"
CONFIG_PROTO = "app/serving/v2/triton_model_config.proto"
STUBS = {
    PROTO: ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"],
    CONFIG_PROTO: ["triton_model_config_pb2.py", "triton_model_config_pb2.pyi"],  # messages only, no service
}
METHODS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


@pytest.mark.parametrize("proto", sorted(STUBS))
def test_committed_stubs_are_what_make_protos_generates(tmp_path: Path, proto: str) -> None:
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
    ]
    if proto == PROTO:
        command.append(f"--grpc_python_out={tmp_path}")
    subprocess.run([*command, proto], cwd=ROOT, check=True, capture_output=True, timeout=60)
    for name in STUBS[proto]:
        generated = (tmp_path / "app/serving/v2" / name).read_bytes()
        committed = (ROOT / "app/serving/v2" / name).read_bytes()
        assert generated == committed, f"app/serving/v2/{name} differs from what {proto} generates: run `make protos`"


def _fields(file: descriptor_pb2.FileDescriptorProto) -> dict[str, dict[str, tuple[int, int, int, str, str]]]:
    """Every message (nested ones too) by full name: each field's number, type, label, type name and oneof."""
    messages: dict[str, dict[str, tuple[int, int, int, str, str]]] = {}

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        oneofs = [oneof.name for oneof in message.oneof_decl]
        messages[name] = {
            f.name: (f.number, f.type, f.label, f.type_name, oneofs[f.oneof_index] if f.HasField("oneof_index") else "")
            for f in message.field
        }
        for nested in message.nested_type:
            walk(name, nested)

    for message in file.message_type:
        walk(f".{file.package}", message)
    return messages


def _methods(file: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[str, str, bool, bool]]:
    return {
        f"{service.name}.{m.name}": (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for service in file.service
        for m in service.method
    }


def _tritonclient_file(module: str) -> descriptor_pb2.FileDescriptorProto:
    """One of tritonclient's own compiled protos, read in another process: both define ``inference.*`` messages,
    and one descriptor pool cannot hold both files."""
    script = f"import sys, tritonclient.grpc.{module} as s; sys.stdout.buffer.write(s.DESCRIPTOR.serialized_pb)"
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=60)
    return descriptor_pb2.FileDescriptorProto.FromString(result.stdout)


def _enums(file: descriptor_pb2.FileDescriptorProto) -> dict[str, dict[str, int]]:
    """Every enum (nested ones too) by full name: its values' numbers."""
    enums = {f".{file.package}.{e.name}": {v.name: v.number for v in e.value} for e in file.enum_type}
    for message in file.message_type:
        for e in message.enum_type:
            enums[f".{file.package}.{message.name}.{e.name}"] = {v.name: v.number for v in e.value}
    return enums


@pytest.fixture(scope="module")
def triton_file() -> descriptor_pb2.FileDescriptorProto:
    """tritonclient's grpc_service.proto."""
    return _tritonclient_file("service_pb2")


def test_every_message_field_matches_tritonclient(triton_file: descriptor_pb2.FileDescriptorProto) -> None:
    ours = _fields(descriptor_pb2.FileDescriptorProto.FromString(grpc_predict_v2_pb2.DESCRIPTOR.serialized_pb))
    theirs = _fields(triton_file)
    assert ours, "no messages read from our descriptor"
    for message, fields in ours.items():
        assert message in theirs, f"{message} is not a message of Triton's proto"
        for name, spec in fields.items():
            assert theirs[message].get(name) == spec, (
                f"{message}.{name}: ours {spec}, Triton's {theirs[message].get(name)}"
            )
    assert ours[".inference.ModelInferRequest"]["raw_input_contents"][0] == 7
    assert ours[".inference.ModelInferResponse"]["raw_output_contents"][0] == 6
    assert ours[".inference.InferTensorContents"]["bytes_contents"][0] == 8


def test_every_method_matches_tritonclient(triton_file: descriptor_pb2.FileDescriptorProto) -> None:
    file = descriptor_pb2.FileDescriptorProto.FromString(grpc_predict_v2_pb2.DESCRIPTOR.serialized_pb)
    ours, theirs = _methods(file), _methods(triton_file)
    assert file.package == triton_file.package == "inference"
    assert sorted(ours) == sorted(f"GRPCInferenceService.{name}" for name in METHODS)
    for method, signature in ours.items():
        assert theirs.get(method) == signature, f"{method}: ours {signature}, Triton's {theirs.get(method)}"


def test_model_config_messages_are_a_subset_of_tritons(triton_file: descriptor_pb2.FileDescriptorProto) -> None:
    """Every field and enum value of triton_model_config.proto has Triton's name, number and type, so Triton's
    clients decode the ModelConfig answer with their own schema (fields foldserve leaves out stay unset)."""
    ours = descriptor_pb2.FileDescriptorProto.FromString(triton_model_config_pb2.DESCRIPTOR.serialized_pb)
    config_file = _tritonclient_file("model_config_pb2")
    theirs = {**_fields(config_file), **_fields(triton_file)}  # ModelConfigRequest/Response: grpc_service.proto
    fields = _fields(ours)
    assert set(fields) >= {".inference.ModelConfig", ".inference.ModelConfigRequest", ".inference.ModelConfigResponse"}
    for message, spec in fields.items():
        assert message in theirs, f"{message} is not a message of Triton's protos"
        for name, field in spec.items():
            assert theirs[message].get(name) == field, (
                f"{message}.{name}: ours {field}, Triton's {theirs[message].get(name)}"
            )
    their_enums = _enums(config_file)
    for enum, values in _enums(ours).items():
        assert enum in their_enums, f"{enum} is not an enum of Triton's model_config.proto"
        for name, number in values.items():
            assert their_enums[enum].get(name) == number, (
                f"{enum}.{name}: ours {number}, Triton's {their_enums[enum].get(name)}"
            )
    assert _methods(triton_file)["GRPCInferenceService.ModelConfig"] == (
        ".inference.ModelConfigRequest",
        ".inference.ModelConfigResponse",
        False,
        False,
    )
