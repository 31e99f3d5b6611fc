"""Triton's gRPC client (tritonclient.grpc) talks to a server built on our stubs and converters.

The server runs here, with a stand-in for the data plane (one model, ``tiny``, whose logits are a fixed linear
map); the client runs in another process, because tritonclient's stubs and ours define the same ``inference.*``
messages and one process cannot load both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from app.serving.errors import ModelNotFound, ServingError
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from app.serving.v2.converters import (
    grpc_status,
    infer_request_from_grpc,
    infer_response_to_grpc,
    model_metadata_to_grpc,
    server_metadata_to_grpc,
)
from app.serving.v2.messages import ModelMetadata, ServerMetadata, TensorMetadata
from app.serving.v2.outputs import check_requested_outputs, infer_response

ROOT = Path(__file__).resolve().parents[3]
LABELS = ["a", "b", "c"]
WEIGHT = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 8 - 0.5  # [C*H*W, classes]
METADATA = ModelMetadata(
    "tiny",
    ("1",),
    "pytorch_safetensors",
    (TensorMetadata("input", "FP32", (-1, 1, 2, 2)),),
    (TensorMetadata("logits", "FP32", (-1, 3)), TensorMetadata("probabilities", "FP32", (-1, 3))),
)


class TinyServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Translate with the converters, as the real servicer will; the 'model' is ``flatten(x) @ WEIGHT``."""

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=request.name == "tiny")

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return server_metadata_to_grpc(ServerMetadata("foldserve", "test", ("binary_tensor_data", "classification")))

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        if request.name != "tiny":
            context.abort(*grpc_status(ModelNotFound(f"unknown model '{request.name}'")))
        return model_metadata_to_grpc(METADATA)

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        try:
            parsed = infer_request_from_grpc(request, max_elements=64)
            check_requested_outputs(parsed.outputs)
            (tensor,) = parsed.inputs
            assert isinstance(tensor.data, torch.Tensor)
            logits = tensor.data.reshape(tensor.shape[0], -1) @ WEIGHT
            return infer_response_to_grpc(infer_response(parsed, logits, LABELS, model_name="tiny", model_version="1"))
        except ServingError as error:
            context.abort(*grpc_status(error))
            raise  # not reached: abort raises


CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

client = grpcclient.InferenceServerClient(f"127.0.0.1:{sys.argv[1]}")
answers = {}

def error(call):
    try:
        call()
    except InferenceServerException as exc:
        return [exc.status(), exc.message()]
    return None

answers["live"] = client.is_server_live()
answers["ready"] = client.is_server_ready()
answers["model_ready"] = [client.is_model_ready("tiny"), client.is_model_ready("nope")]
answers["server"] = client.get_server_metadata(as_json=True)
answers["model"] = client.get_model_metadata("tiny", as_json=True)
answers["unknown_model"] = error(lambda: client.get_model_metadata("nope"))

x = (np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2) - 3) / 4
image = grpcclient.InferInput("input", [2, 1, 2, 2], "FP32")
image.set_data_from_numpy(x)
outputs = [grpcclient.InferRequestedOutput("logits"), grpcclient.InferRequestedOutput("probabilities", class_count=2)]
result = client.infer("tiny", [image], outputs=outputs, request_id="r1")
answers["logits"] = result.as_numpy("logits").tolist()
answers["classes"] = [[c.decode() for c in row] for row in result.as_numpy("probabilities")]
answers["id"] = result.get_response().id
everything = client.infer("tiny", [image])
answers["default_outputs"] = [output.name for output in everything.get_response().outputs]
answers["probabilities"] = everything.as_numpy("probabilities").tolist()

wrong = grpcclient.InferInput("input", [2, 1, 2, 2], "FP32")
wrong.set_data_from_numpy(x)
wrong.set_shape([3, 1, 2, 2])
answers["wrong_shape"] = error(lambda: client.infer("tiny", [wrong]))
big = grpcclient.InferInput("input", [20, 1, 2, 2], "FP32")
big.set_data_from_numpy(np.zeros((20, 1, 2, 2), dtype=np.float32))
answers["too_big"] = error(lambda: client.infer("tiny", [big]))
unknown = [grpcclient.InferRequestedOutput("features")]
answers["unknown_output"] = error(lambda: client.infer("tiny", [image], outputs=unknown))
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def answers() -> Iterator[dict[str, Any]]:
    """What tritonclient.grpc, in another process, got from the stand-in server."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(TinyServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, str(port)], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        yield json.loads(result.stdout)
    finally:
        server.stop(grace=None)


def test_health_and_metadata_calls(answers: dict[str, Any]) -> None:
    assert answers["live"] is True and answers["ready"] is True
    assert answers["model_ready"] == [True, False]
    assert answers["server"] == {
        "name": "foldserve",
        "version": "test",
        "extensions": ["binary_tensor_data", "classification"],
    }
    assert answers["model"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "1", "2", "2"]}]
    assert [o["name"] for o in answers["model"]["outputs"]] == ["logits", "probabilities"]
    assert answers["unknown_model"] == ["StatusCode.NOT_FOUND", "unknown model 'nope'"]


def test_infer_with_raw_inputs_and_classification(answers: dict[str, Any]) -> None:
    x = (torch.arange(8, dtype=torch.float32).reshape(2, 4) - 3) / 4
    logits = x @ WEIGHT
    torch.testing.assert_close(torch.tensor(answers["logits"]), logits, rtol=0, atol=0)
    probabilities = torch.softmax(logits.double(), dim=1).float()
    top = [sorted(range(3), key=lambda k, row=row: -probabilities[row, k].item())[:2] for row in range(2)]
    assert answers["classes"] == [
        [f"{probabilities[row, k].item():f}:{k}:{LABELS[k]}" for k in top[row]] for row in range(2)
    ]
    assert answers["id"] == "r1"
    assert answers["default_outputs"] == ["logits", "probabilities"]
    torch.testing.assert_close(torch.tensor(answers["probabilities"]), probabilities, rtol=0, atol=0)


def test_bad_requests_come_back_as_grpc_status_codes(answers: dict[str, Any]) -> None:
    assert answers["wrong_shape"] == [
        "StatusCode.INVALID_ARGUMENT",
        "input 'input': FP32 shape [3, 1, 2, 2] needs 48 bytes (12 elements of 4), got 32",
    ]
    assert answers["too_big"][0] == "StatusCode.RESOURCE_EXHAUSTED"
    assert "more than the 64 a request may carry" in answers["too_big"][1]
    assert answers["unknown_output"] == [
        "StatusCode.INVALID_ARGUMENT",
        "unknown output 'features'; the model's outputs are 'logits' and 'probabilities'",
    ]


def test_client_stubs_cannot_share_a_process_with_ours() -> None:
    """Why the client runs apart: importing tritonclient.grpc after our stubs fails (so the wiring must not)."""
    stubs = ROOT / "app/serving/v2/grpc_predict_v2_pb2.py"  # run alone: importing app.serving would take seconds
    script = f"import runpy; runpy.run_path({str(stubs)!r}); import tritonclient.grpc"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "duplicate symbol 'inference." in result.stderr
