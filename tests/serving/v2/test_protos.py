"""The gRPC stubs cannot drift from the .proto, and the .proto speaks the wire protocol Triton's client speaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from app.serving.v2 import grpc_predict_v2_pb2

ROOT = Path(__file__).resolve().parents[3]
PROTO = "app/serving/v2/grpc_predict_v2.proto"
STUBS = ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"]
METHODS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


def test_committed_stubs_are_what_make_protos_generates(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", "."]
    command += [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", PROTO]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=60)
    for name in STUBS:
        generated = (tmp_path / "app/serving/v2" / name).read_bytes()
        committed = (ROOT / "app/serving/v2" / name).read_bytes()
        assert generated == committed, f"app/serving/v2/{name} differs from what {PROTO} generates: run `make protos`"


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


@pytest.fixture(scope="module")
def triton_file() -> descriptor_pb2.FileDescriptorProto:
    """tritonclient's own grpc_service.proto, read in another process: both define ``inference.*`` messages,
    and one descriptor pool cannot hold both files."""
    script = "import sys, tritonclient.grpc.service_pb2 as s; sys.stdout.buffer.write(s.DESCRIPTOR.serialized_pb)"
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=60)
    return descriptor_pb2.FileDescriptorProto.FromString(result.stdout)


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
