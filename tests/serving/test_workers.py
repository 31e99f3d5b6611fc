"""FOLDSERVE_WORKERS=2 for real: two forked workers on one port (HTTP and gRPC), one scrape for both, replacement,
drain."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.serving.v2 import grpc_predict_v2_pb2 as pb
from app.serving.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.server import Server, eventually, free_port
from tests.serving.conftest import SIZE, digit_png, write_checkpoint

pytestmark = pytest.mark.slow

PNG = {"content-type": "image/png"}
REQUESTS = {"model": "linear", "variant": "collapsed", "protocol": "predict", "status": "200"}


class Workers(Server):
    """``python -m app serve`` with two workers on a tiny store, its metrics folder and its log."""

    def __init__(self, root: Path, **env: str) -> None:
        write_checkpoint(root / "store", "linear", kind="linear")
        self.metrics_dir, self.grpc_port = root / "metrics", free_port()
        workers = {"FOLDSERVE_WORKERS": "2", "FOLDSERVE_METRICS_DIR": str(self.metrics_dir)}
        super().__init__(
            root / "store", root / "server.log", {**workers, "FOLDSERVE_GRPC_PORT": str(self.grpc_port), **env}
        )

    def requests_per_worker(self, protocol: str = "predict") -> dict[int, float]:
        """Answers counted in each worker's own counter file (copied apart, then collected)."""
        counts = {}
        for path in self.metrics_dir.glob("counter_*.db"):
            alone = self.metrics_dir.parent / f"alone-{path.stem}"
            alone.mkdir(exist_ok=True)
            shutil.copy(path, alone / path.name)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(alone))
            labels = {**REQUESTS, "protocol": protocol}
            counts[int(path.stem.split("_")[1])] = registry.get_sample_value("foldserve_requests_total", labels) or 0
        return counts


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    with Workers(tmp_path, FOLDSERVE_DRAIN_S="20") as server:
        yield server


def post_alone(url: str, seed: int) -> httpx.Response:
    """One request on its own connection, so that the kernel may give it to either worker."""
    with httpx.Client(timeout=30) as client:
        return client.post(f"{url}/predict?model=linear", content=digit_png(seed), headers=PNG)


def test_one_scrape_counts_the_requests_of_both_workers(workers: Workers) -> None:
    before = workers.value("foldserve_requests_total", **REQUESTS) or 0
    answers = [post_alone(workers.url, seed) for seed in range(60)]
    assert [a.status_code for a in answers] == [200] * 60
    assert workers.value("foldserve_requests_total", **REQUESTS) == before + 60
    per_worker = workers.requests_per_worker()
    assert len(per_worker) == 2 and sum(per_worker.values()) == before + 60
    assert all(count > 0 for count in per_worker.values()), f"one worker answered nothing: {per_worker}"
    assert workers.value("foldserve_queue_depth", model="linear", variant="collapsed") == 0  # livesum of 2
    pss = workers.value("foldserve_memory_bytes", measure="pss")
    assert pss is not None and pss > 100 * 2**20


def infer_alone(port: int) -> pb.ModelInferResponse:
    """One gRPC inference on its own channel and connection (no shared subchannel), which either worker may get."""
    request = pb.ModelInferRequest(model_name="linear")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, SIZE, SIZE])
    request.raw_input_contents.append(np.zeros((1, 1, SIZE, SIZE), dtype="<f4").tobytes())
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        response: pb.ModelInferResponse = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        return response


def test_every_worker_serves_grpc_on_the_shared_port(workers: Workers) -> None:
    answers = [infer_alone(workers.grpc_port) for _ in range(40)]
    assert all(answer.outputs[0].name == "logits" for answer in answers)
    per_worker = workers.requests_per_worker("v2-grpc")
    assert len(per_worker) == 2 and sum(per_worker.values()) == 40
    assert all(count > 0 for count in per_worker.values()), f"one worker answered no gRPC call: {per_worker}"


def test_a_dead_worker_is_replaced_and_its_live_gauges_dropped(workers: Workers) -> None:
    first = workers.worker_pids()
    assert len(first) == 2
    victim = min(first)
    served = workers.value("foldserve_requests_total", **REQUESTS) or 0
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(workers.worker_pids() - {victim}) == 2, "a replacement worker", timeout=60)
    eventually(workers.is_ready, "both workers ready", timeout=60)
    assert victim not in workers.worker_pids()
    assert f"worker {victim} exited (killed by SIGKILL)" in workers.log.read_text()
    assert workers.value("foldserve_workers") == 2  # the dead worker's 1 was dropped, its replacement counts
    assert (workers.value("foldserve_requests_total", **REQUESTS) or 0) == served  # its counts stay
    assert post_alone(workers.url, 1).status_code == 200


def test_sigterm_lets_a_request_in_flight_finish_then_exits(workers: Workers) -> None:
    body = digit_png(3)
    head = (
        f"POST /predict?model=linear HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", workers.port), timeout=30) as client:
        client.sendall(head + body[:10])  # the request is in flight: its body is half sent
        time.sleep(0.3)
        stopping = time.monotonic()
        os.kill(workers.pid, signal.SIGTERM)
        eventually(lambda: "stopping 2 workers" in workers.log.read_text(), "the supervisor stopping its workers")
        client.sendall(body[10:])
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert workers.process is not None
    workers.process.wait(timeout=30)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"model":"linear"' in answer
    assert workers.process.returncode == 0
    assert time.monotonic() - stopping < 20  # within the drain time


# Everything `python -m app serve` imports before it forks, with CUDA's device queries counted. A process that asks
# CUDA for its devices (torch.cuda.is_available() does) marks every child it forks later as unable to use CUDA
# ("Cannot re-initialize CUDA in forked subprocess"): on a machine with a GPU no worker could load a model.
SUPERVISOR_IMPORTS = """
import torch
calls = []
for name in ("_cuda_getDeviceCount", "_cuda_init"):
    real = getattr(torch._C, name, None)
    if real is not None:
        setattr(torch._C, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
from app.__main__ import build_parser
build_parser()
import app.serving.app, app.serving.workers, app.benchmark
print(calls)
"""


def test_the_supervisor_asks_cuda_nothing_before_it_forks() -> None:
    done = subprocess.run([sys.executable, "-c", SUPERVISOR_IMPORTS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_each_worker_builds_its_own_runtime_after_the_fork(tmp_path: Path) -> None:
    with Workers(tmp_path, FOLDSERVE_RUNTIMES="onnxruntime") as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        for pid in workers:  # each worker's own sessions, built in it
            assert "onnxruntime_pybind11_state" in Path(f"/proc/{pid}/maps").read_text(), pid
        # the supervisor forked them before any runtime existed: it never loaded ONNX Runtime
        assert "onnxruntime" not in Path(f"/proc/{server.pid}/maps").read_text()
        labels = {"model": "linear", "variant": "original"}
        assert server.value("foldserve_variant_runtime_info", **labels, runtime="onnxruntime") == 1
        assert server.value("foldserve_variant_runtime_info", **labels, runtime="eager") == 0
        answers = [post_alone(server.url, 0) for _ in range(40)]  # one image, to whichever worker takes it
        assert [a.status_code for a in answers] == [200] * 40
        assert len({str(a.json()["predictions"]) for a in answers}) == 1  # both workers' sessions answer alike
        assert all(count > 0 for count in server.requests_per_worker().values())


def test_a_replacement_serves_its_siblings_version_while_the_store_is_corrupt(tmp_path: Path) -> None:
    """Poll mode: the store's next version is corrupt, both workers keep serving the last good one; a worker killed
    then is replaced by one that loads that version from the copy its sibling kept, before it accepts anything."""
    poll = {"FOLDSERVE_MODEL_CONTROL": "poll", "FOLDSERVE_MODEL_POLL_S": "0.2"}
    with Workers(tmp_path, **poll) as server:
        folder = tmp_path / "store" / "linear"
        manifest = (folder / "manifest.json").read_text()
        weights = bytearray((folder / "weights.safetensors").read_bytes())
        weights[-64:] = bytes(64)  # the sha256 no longer matches
        (folder / "weights.safetensors").write_bytes(bytes(weights))
        (folder / "manifest.json").write_text(manifest.replace('"version": "1"', '"version": "2"'))
        failed = "loading linear again failed; the version served stays"
        eventually(lambda: server.log.read_text().count(failed) == 2, "both workers refusing the corrupt version")
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        eventually(lambda: len(server.worker_pids() - {victim}) == 2, "a replacement worker", timeout=60)
        answers = [post_alone(server.url, seed) for seed in range(80)]  # while the replacement loads, and after
        eventually(lambda: "the store's version fails" in server.log.read_text(), "the replacement's fallback")
        answers += [post_alone(server.url, seed) for seed in range(80)]
        assert [a.status_code for a in answers] == [200] * len(answers), {a.text for a in answers}
        replacement = max(server.worker_pids())
        assert server.requests_per_worker().get(replacement, 0) > 0  # it served, version 1
        versions = {httpx.get(f"{server.url}/v2/models/linear", timeout=10).json()["versions"][0] for _ in range(20)}
        assert versions == {"1"}


def _answers_on_one_connection(port: int, count: int) -> tuple[list[bytes], bytes]:
    """``count`` requests one after the other on one socket: each answer's head, and what follows the last."""
    body = digit_png(0)
    request = (
        f"POST /predict?model=linear HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    heads = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, sock.makefile("rb") as reader:
        for _ in range(count):
            sock.sendall(request)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += reader.readline()
            lines = head.split(b"\r\n")
            reader.read(next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length")))
            heads.append(head)
        try:  # after Connection: close the server has closed its end: nothing more comes back
            sock.sendall(request)
            rest = reader.read()
        except ConnectionResetError:
            rest = b""
    return heads, rest


def test_a_connection_is_closed_after_its_last_request_so_that_clients_reconnect_and_spread(tmp_path: Path) -> None:
    env = {"FOLDSERVE_MAX_REQUESTS_PER_CONNECTION": "3", "FOLDSERVE_GRPC_MAX_CONNECTION_AGE_S": "1"}
    with Workers(tmp_path, **env) as server:
        heads, rest = _answers_on_one_connection(server.port, 3)
        assert all(head.startswith(b"HTTP/1.1 200") for head in heads)
        assert [b"connection: close" in head.lower() for head in heads] == [False, False, True]
        assert rest == b""
        # gRPC: one channel's connection gets GOAWAY every second or so; its calls go on over the next one
        request = pb.ModelInferRequest(model_name="linear")
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1, SIZE, SIZE])
        request.raw_input_contents.append(np.zeros((1, 1, SIZE, SIZE), dtype="<f4").tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            answers = []
            for _ in range(30):
                answers.append(stub.ModelInfer(request, timeout=30))
                time.sleep(0.1)
        assert all(answer.outputs[0].name == "logits" for answer in answers)
        assert sum(server.requests_per_worker("v2-grpc").values()) == 30
