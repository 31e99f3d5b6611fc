"""The protocol's doors in this process: readiness while a model loads, the gRPC deadline and full queue, the
dispatch of the REST inference route, the protocol's error body, and the OpenAPI document.

The app runs under TestClient (its lifespan starts the gRPC server on a free port); gRPC calls use our own stubs,
which this process may load (it never imports tritonclient.grpc; see test_grpc_wire.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import app.serving.registry as registry_module
from app.serving import create_app
from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from app.serving.v2.grpc_server import _deadline
from tests.server import eventually, free_port
from tests.serving.conftest import SIZE, digit_png, fast_settings, wait_until_loaded, write_checkpoint

PNG = {"content-type": "image/png"}


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    value: float | None = client.app.state.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value


@contextlib.contextmanager
def grpc_stub(port: int) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def infer_message(model: str, images: int, *, collapsed: bool = True) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="input", datatype="FP32", shape=[images, 1, SIZE, SIZE])
    message.raw_input_contents.append(np.zeros((images, 1, SIZE, SIZE), dtype="<f4").tobytes())
    message.parameters["collapsed"].bool_param = collapsed
    return message


@pytest.fixture
def gated_store(tmp_path: Path, annealed_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``a-fast`` (loads), ``b-tampered`` (fails: its weights do not match their hash) and ``c-slow``, whose
    loading waits until the returned event is set (the registry loads in name order)."""
    for name in ("a-fast", "b-tampered", "c-slow"):
        shutil.copytree(annealed_store / "annealed", tmp_path / name)
    weights = tmp_path / "b-tampered" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    release = threading.Event()
    real_load = registry_module.load_model

    def load(directory: Path, *args: Any) -> Any:
        if directory.name == "c-slow":
            release.wait(timeout=60)
        return real_load(directory, *args)

    monkeypatch.setattr(registry_module, "load_model", load)
    try:
        yield release
    finally:
        release.set()


def test_readiness_waits_for_every_model_and_lists_the_failed_ones(
    tmp_path: Path, gated_store: threading.Event
) -> None:
    port = free_port()
    with TestClient(create_app(fast_settings(tmp_path, grpc_port=port))) as client, grpc_stub(port) as stub:
        eventually(lambda: client.get("/models/b-tampered").json()["status"] == "failed", "b-tampered not failed")
        assert client.get("/models/c-slow").json()["status"] == "loading"

        readyz = client.get("/readyz")
        assert readyz.status_code == 503 and readyz.headers["retry-after"] == "1"
        assert readyz.json()["error"]["message"] == "not ready: still loading: c-slow"
        assert client.get("/v2/health/ready").status_code == 400
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is False
        assert client.get("/v2/health/live").status_code == 200
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live is True
        assert [client.get(f"/v2/models/{m}/ready").status_code for m in ("a-fast", "b-tampered", "c-slow")] == [
            200,
            400,
            400,
        ]
        assert stub.ModelReady(pb.ModelReadyRequest(name="c-slow"), timeout=10).ready is False
        assert client.get("/v2/models/nope/ready").json() == {
            "error": "unknown model 'nope'; known models: a-fast, b-tampered, c-slow"
        }
        loading = client.post("/v2/models/c-slow/infer", json={"inputs": []})
        assert loading.status_code == 503 and loading.json() == {"error": "model 'c-slow' is still loading"}
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(infer_message("c-slow", 1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ("retry-after", "1") in refused.value.trailing_metadata()

        gated_store.set()
        wait_until_loaded(client)
        readyz = client.get("/readyz")
        assert readyz.status_code == 200
        body = readyz.json()
        assert body["models"] == ["a-fast", "c-slow"] and list(body["failed"]) == ["b-tampered"]
        assert "sha256 mismatch" in body["failed"]["b-tampered"]
        assert client.get("/v2/health/ready").status_code == 200
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is True


def test_strict_readiness_stays_unready_while_a_model_has_failed(tmp_path: Path, gated_store: threading.Event) -> None:
    gated_store.set()
    with TestClient(create_app(fast_settings(tmp_path, strict_readiness=True))) as client:
        wait_until_loaded(client)
        readyz = client.get("/readyz")
        ready = client.get("/v2/health/ready")
    assert readyz.status_code == 503
    message = readyz.json()["error"]["message"]
    assert message.startswith("not ready: strict readiness and models failed to load: b-tampered: ")
    assert "sha256 mismatch" in message
    assert ready.status_code == 400 and ready.content == b""


@pytest.fixture
def gated_forward(tmp_path: Path) -> Iterator[tuple[TestClient, int, threading.Event, threading.Event]]:
    """A batched-only service with a queue of 4 images, whose ``linear`` original network blocks each forward
    pass until ``release`` is set; ``entered`` is set when one starts."""
    write_checkpoint(tmp_path, "linear", kind="linear")
    port = free_port()
    settings = fast_settings(
        tmp_path,
        grpc_port=port,
        inline_max_forward_us=0,
        max_batch_size=4,
        max_queue_size=4,
        max_images_per_request=4,
        max_wait_ms=0,
    )
    entered, release = threading.Event(), threading.Event()
    with TestClient(create_app(settings)) as client:
        wait_until_loaded(client)
        batcher = client.app.state.models.entries["linear"].variants["original"].batcher  # type: ignore[attr-defined]
        network = batcher.runtime

        class Gate(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                entered.set()
                release.wait(timeout=60)
                return network(x)

        batcher.runtime = Gate()
        try:
            yield client, port, entered, release
        finally:
            release.set()


def test_grpc_deadline_bounds_the_request(
    gated_forward: tuple[TestClient, int, threading.Event, threading.Event],
) -> None:
    client, port, _, release = gated_forward
    with grpc_stub(port) as stub:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            stub.ModelInfer(infer_message("linear", 1, collapsed=False), timeout=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        labels = {"model": "linear", "variant": "original", "protocol": "v2-grpc", "status": "504"}
        # counted while the forward pass still blocks: the server gave up at the client's deadline, not its own 10 s
        eventually(lambda: sample(client, "foldserve_requests_total", **labels) == 1, "the 504 was not counted")
        assert time.monotonic() - started < 5 and not release.is_set()


async def test_grpc_deadline_is_the_earlier_of_the_clients_and_the_services() -> None:
    loop = asyncio.get_running_loop()
    service: Any = SimpleNamespace(plane=SimpleNamespace(deadline=lambda: loop.time() + 10.0))
    for remaining, expected in ((0.25, 0.25), (60.0, 10.0), (None, 10.0)):
        context: Any = SimpleNamespace(time_remaining=lambda remaining=remaining: remaining)
        assert _deadline(service, context) - loop.time() == pytest.approx(expected, abs=0.05)


def test_config_shows_dynamic_batching_for_a_batched_variant(
    gated_forward: tuple[TestClient, int, threading.Event, threading.Event],
) -> None:
    client = gated_forward[0]
    config = client.get("/v2/models/linear/config").json()
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 0}
    assert config["max_batch_size"] == 4


def test_grpc_full_queue_is_unavailable_with_retry_after(
    gated_forward: tuple[TestClient, int, threading.Event, threading.Event],
) -> None:
    client, port, entered, release = gated_forward
    batcher = client.app.state.models.entries["linear"].variants["original"].batcher  # type: ignore[attr-defined]
    with grpc_stub(port) as stub:
        running = stub.ModelInfer.future(infer_message("linear", 4, collapsed=False), timeout=30)
        assert entered.wait(timeout=30)
        queued = stub.ModelInfer.future(infer_message("linear", 4, collapsed=False), timeout=30)
        eventually(lambda: batcher.queue_depth == 4, "the second request was not queued")
        with pytest.raises(grpc.RpcError) as full:
            stub.ModelInfer(infer_message("linear", 1, collapsed=False), timeout=30)
        assert full.value.code() == grpc.StatusCode.UNAVAILABLE
        assert full.value.details().startswith("queue is full (4 of 4 images waiting")
        assert ("retry-after", "1") in full.value.trailing_metadata()
        release.set()
        assert [len(f.result().raw_output_contents) for f in (running, queued)] == [2, 2]
    labels = {"model": "linear", "variant": "original", "protocol": "v2-grpc"}
    assert sample(client, "foldserve_requests_total", **labels, status="200") == 2
    assert sample(client, "foldserve_requests_total", **labels, status="503") == 1


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(fast_settings(store))) as client:
        wait_until_loaded(client)
        yield client


def test_the_versioned_infer_path_reaches_the_same_door(client: TestClient) -> None:
    document = {"inputs": [{"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP32", "data": [0.5] * 144}]}
    plain = client.post("/v2/models/linear/infer", json=document)
    versioned = client.post("/v2/models/linear/versions/1/infer", json=document)
    assert plain.status_code == versioned.status_code == 200
    assert plain.json()["outputs"] == versioned.json()["outputs"]
    assert versioned.json()["model_version"] == "1"


def test_errors_under_v2_have_the_protocols_body_and_elsewhere_the_services(client: TestClient) -> None:
    assert client.get("/v2/models/linear/infer").json() == {"error": "Method Not Allowed"}
    assert client.get("/v2/models/linear/infer").status_code == 405
    assert client.get("/v2/no/such/path").json() == {"error": "Not Found"}
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/nope/config").json() == {
        "error": "unknown model 'nope'; known models: annealed, linear"
    }
    assert client.get("/v2/models/linear/versions/9/config").json() == {
        "error": "model 'linear' has no version '9'; its only version is '1'"
    }
    assert client.get("/v2x").json() == {"error": {"code": "not_found", "message": "Not Found"}}
    # a 405 names every method of the path (Starlette's names only the first route's where several share it)
    assert client.options("/v2/repository/index").headers["allow"] == "GET, POST"
    assert client.get("/v2/models/linear/infer").headers["allow"] == "POST"
    refused = client.post("/predict?model=nope", content=digit_png(), headers=PNG)
    assert refused.json()["error"]["code"] == "model_not_found"


def test_requests_are_counted_once_per_protocol(client: TestClient) -> None:
    labels = {"model": "linear", "variant": "collapsed"}
    before = {
        p: sample(client, "foldserve_requests_total", **labels, protocol=p, status="200")
        for p in ("predict", "v2-rest")
    }
    assert client.post("/predict?model=linear", content=digit_png(), headers=PNG).status_code == 200
    document = {"inputs": [{"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP32", "data": [0.0] * 144}]}
    assert client.post("/v2/models/linear/infer", json=document).status_code == 200
    for protocol, count in before.items():
        assert sample(client, "foldserve_requests_total", **labels, protocol=protocol, status="200") == (count or 0) + 1
    latency = sample(client, "foldserve_request_duration_seconds_count", **labels, protocol="v2-rest")
    assert latency is not None and latency >= 1


def test_openapi_documents_the_infer_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"200", "400", "404", "408", "413", "503", "504"} <= set(operation["responses"])
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/V2ErrorBody"
    }
    assert [p["name"] for p in operation["parameters"]] == ["name", "Inference-Header-Content-Length"]
    assert "/v2/models/{name}/versions/{version}/infer" in spec["paths"]
    assert {"/v2", "/v2/health/ready", "/v2/models/{name}/config"} <= set(spec["paths"])


def test_a_taken_grpc_port_fails_the_start(tmp_path: Path) -> None:
    port = free_port()
    holder = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # SO_REUSEPORT, as grpcio binds by default
    holder.add_insecure_port(f"127.0.0.1:{port}")
    holder.start()
    try:
        app = create_app(fast_settings(tmp_path, grpc_port=port))
        with pytest.raises(OSError, match=f"cannot serve gRPC on 127.0.0.1:{port}"), TestClient(app):
            pass
    finally:
        holder.stop(grace=None)
