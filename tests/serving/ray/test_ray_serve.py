"""The application served by a real (one-node) Ray Serve cluster answers exactly as the single process does."""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")

from app.serving import create_app
from tests.serving.conftest import SIZE, digit_png, fast_settings, wait_until_loaded

ROOT = Path(__file__).resolve().parents[3]
CHILD = Path(__file__).with_name("serve_child.py")
START_TIMEOUT_S = 240.0
PNG = {"content-type": "image/png"}

# What both the replica and the reference run with (the replica reads them from its environment).
# no gRPC (HTTP only); both sides on ONNX Runtime, which the replica must build for itself (its answers then equal the
# single process's to the bit, where two runtimes chosen by separate measurements would differ in the last bits)
SETTINGS: dict[str, Any] = {"torch_threads": 1, "decode_threads": 1, "grpc_port": 0, "runtimes": "onnxruntime"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx arguments): every answer and error the comparison covers."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for model in ("annealed", "linear"):
        for collapsed in ("true", "false"):
            for seed in range(3):
                path = f"/predict?model={model}&collapsed={collapsed}&top_k=5"
                calls.append(("POST", path, {"content": digit_png(seed), "headers": PNG}))
    two = [("file", ("a.png", digit_png(7), "image/png")), ("file", ("b.png", digit_png(8), "image/png"))]
    calls.append(("POST", "/predict?model=linear", {"files": two}))  # multipart, two images
    calls.append(("POST", "/predict", {"content": b"text", "headers": {"content-type": "text/plain"}}))  # 415
    calls.append(("POST", "/predict?model=nope", {"content": digit_png(), "headers": PNG}))  # 404
    calls.append(("POST", "/predict?model=linear&top_k=0", {"content": digit_png(), "headers": PNG}))  # 422
    calls.append(("POST", "/predict?model=linear", {"content": b"\x89PNG broken", "headers": PNG}))  # 400
    calls.append(("GET", "/predict", {}))  # 405, from FastAPI's router behind the hot route
    calls.append(("GET", "/models/linear", {}))
    # the Open Inference Protocol's REST door: its hot infer route with path parameters, errors, health, metadata
    tensor = {"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP32", "data": [0.25] * SIZE * SIZE}
    for path in ("/v2/models/linear/infer", "/v2/models/annealed/versions/1/infer"):
        calls.append(("POST", path, {"json": {"inputs": [tensor], "parameters": {"collapsed": False}}}))
        calls.append(("POST", path, {"json": {"inputs": [tensor]}}))
    calls.append(("POST", "/v2/models/linear/infer", {"json": {"inputs": []}}))  # 400, the protocol's body
    calls.append(("GET", "/v2/models/linear/infer", {}))  # 405
    calls.append(("GET", "/v2/health/ready", {}))
    calls.append(("GET", "/v2/models/linear", {}))
    return calls


def comparable(response: httpx.Response) -> tuple[int, Any]:
    """Status and body, less what is measured anew by every process (timings, load times, speeds)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.status_code, response.text
    return response.status_code, _without_measurements(response.json())


def _without_measurements(body: Any) -> Any:
    if isinstance(body, dict):
        measured = (
            *("timings_ms", "load_seconds", "forward_speedup", "seconds", "transform_seconds", "latency_ms"),
            *("images_per_s", "max_batch_size", "build_seconds", "graph"),
        )
        return {k: _without_measurements(v) for k, v in body.items() if k not in measured}
    return body


@pytest.fixture(scope="module")
def ray_service(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The proxy's and the metrics port's base URLs of a one-node Ray cluster serving ``store``."""
    http_port, metrics_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="frs-", dir="/tmp")  # short: Ray's socket paths live under it
    settings = fast_settings(store, **SETTINGS)
    env = {
        **os.environ,
        **{f"FOLDSERVE_{k.upper()}": str(v) for k, v in settings.model_dump(exclude_none=True).items()},
        # a token of this cluster's own: a new local cluster would otherwise write one to ~/.ray/auth_token
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    log = tmp_path_factory.mktemp("ray") / "child.log"
    args = [sys.executable, str(CHILD), str(http_port), str(metrics_port), temp_dir]
    with (
        open(log, "wb") as errors,
        subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        ) as child,
    ):
        try:
            assert child.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(child.stdout, selectors.EVENT_READ)
                ready = selector.select(timeout=START_TIMEOUT_S)
            line = child.stdout.readline().decode().strip() if ready else ""
            assert line == "serving", f"Ray did not serve within {START_TIMEOUT_S:.0f} s: {log.read_text()[-3000:]}"
            yield f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}"
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_answers_every_route_as_the_single_process(store: Path, ray_service: tuple[str, str]) -> None:
    proxy, _ = ray_service
    with TestClient(create_app(fast_settings(store, **SETTINGS))) as reference:
        wait_until_loaded(reference)
        with httpx.Client(base_url=proxy, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            for method, path, arguments in requests():
                ours, theirs = client.request(method, path, **arguments), reference.request(method, path, **arguments)
                assert comparable(ours) == comparable(theirs), f"{method} {path}"
                if "Retry-After" in theirs.headers:
                    assert ours.headers["Retry-After"] == theirs.headers["Retry-After"]
            assert client.get("/metrics").text.startswith("# HELP")
            variants = client.get("/models/linear").json()["variants"]
    assert {v["runtime"] for v in variants.values()} == {"onnxruntime"}, variants
    assert {v["candidates"]["onnxruntime"]["status"] for v in variants.values()} == {"served"}


@pytest.mark.slow
def test_the_hosts_metrics_port_counts_the_replicas_answers(ray_service: tuple[str, str]) -> None:
    proxy, metrics = ray_service

    def answers() -> float:
        text = httpx.get(f"{metrics}/metrics", timeout=10).text
        lines = [line for line in text.splitlines() if line.startswith("foldserve_requests_total{")]
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in lines if 'status="200"' in line and 'model="linear"' in line
        )

    before = answers()
    for seed in range(5):
        response = httpx.post(f"{proxy}/predict?model=linear", content=digit_png(seed), headers=PNG, timeout=30)
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    while answers() != before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answers() == before + 5
    text = httpx.get(f"{metrics}/metrics", timeout=10).text
    assert "\nfoldserve_workers 1.0\n" in text  # one replica on this host
