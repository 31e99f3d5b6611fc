"""A few seconds of real load against the real service: ``python -m loadtest run --spawn`` on a tiny checkpoint."""

import json
from pathlib import Path

import httpx
import pytest
import torch

from app.nets import ResNetConfig, build_resnet
from app.store import InputSpec, save_checkpoint
from loadtest.cli import main
from tests.server import Server, free_port

SERVER_ENV = {
    "FOLDSERVE_TORCH_THREADS": "1",
    "FOLDSERVE_WARMUP_RUNS": "1",
    "FOLDSERVE_SPEEDUP_ROUNDS": "3",
    "FOLDSERVE_LOG_LEVEL": "warning",
}


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    """A model store holding one width-4 linear ResNet18 (it collapses to one affine map)."""
    torch.manual_seed(0)
    model = build_resnet(ResNetConfig(depth=18, width=4, activation="identity", skips="annealed")).eval()
    spec = InputSpec(channels=1, height=28, width=28, mean=[0.1307], std=[0.3081])
    save_checkpoint(tmp_path / "store" / "tiny", model, name="tiny", input=spec, labels=[str(i) for i in range(10)])
    return tmp_path / "store"


def test_loadtest_run_against_the_real_service(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["run", "--spawn", str(tiny_store), "--model", "tiny", "--variant", "both", "--concurrency", "2"]
    args += ["--requests", "40", "--duration", "3", "--out", str(out)]
    args += [f"--server-env={k}={v}" for k, v in SERVER_ENV.items()]
    assert main(args) == 0

    report = json.loads((out / "report.json").read_text())
    run = report["measurements"][-1]
    assert run["engine"] == "httpx"
    assert run["spec"]["max_requests"] == 40
    for variant in ("collapsed", "original"):
        client, server = run["client"][variant], run["server"][variant]
        assert client["statuses"] == {"200": 20}
        assert client["latency_s"]["p50"] > 0
        assert server["decode"]["count"] == 20  # the server saw exactly the requests the client sent
        assert server["requests_by_status"] == {"200": 20.0}
        assert server["inference"]["count"] >= 1
    assert report["measurements"][0]["client"]["healthz"]["statuses"] == {"200": 40}
    assert report["engine_ceiling"].startswith("healthz c2: ")
    assert {"report.md", "latency.png", "timeline.png", "requests.csv"} <= {p.name for p in out.iterdir()}
    with pytest.raises(httpx.ConnectError):  # the server is gone
        httpx.get(report["base_url"] + "/healthz", timeout=2.0)


def test_loadtest_grpc_against_the_real_service(tiny_store: Path, tmp_path: Path) -> None:
    grpc_port = free_port()
    env = {**SERVER_ENV, "FOLDSERVE_GRPC_PORT": str(grpc_port)}
    with Server(tiny_store, tmp_path / "server.log", env) as server:
        target = f"127.0.0.1:{grpc_port}"
        assert main(["grpc", target, "tiny", "--concurrency", "2", "--duration", "1", "--out", str(tmp_path)]) == 0
        labels = {"model": "tiny", "variant": "collapsed", "protocol": "v2-grpc", "status": "200"}
        counted = server.value("foldserve_requests_total", **labels)
    report = json.loads((tmp_path / "grpc.json").read_text())
    result = report["result"]
    assert result["answers"] > 10 and result["errors"] == {}
    assert result["input"] == "FP32 zeros" and result["concurrency"] == 2
    assert 0 < result["p50_s"] <= result["p99_s"] < 1
    assert report["command"].startswith("python -m loadtest grpc 127.0.0.1:")
    assert counted == result["answers"] + 1  # and the one call that warmed the channel
    assert f"{result['answers']} answers" in (tmp_path / "grpc.md").read_text()
