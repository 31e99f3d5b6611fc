"""The host metrics of the Ray deployment: replicas' files summed, the dead pruned, one port shared."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")

from app.serving.ray.host_metrics import HostMetrics, live_pids

# A replica as far as the files go: counts `answers` requests and sets its live gauge, then waits or exits.
REPLICA = """
import os, sys, time
from prometheus_client import CollectorRegistry, Counter, Gauge
registry = CollectorRegistry()
Counter("foldserve_requests", "", ["status"], registry=registry).labels("200").inc(float(sys.argv[1]))
Gauge("foldserve_workers", "", registry=registry, multiprocess_mode="livesum").set(1)
print("ready", flush=True)
if sys.argv[2] == "stay":
    time.sleep(60)
"""


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostMetrics]:
    """A HostMetrics on a free port; the process's prometheus_client value class is restored afterwards."""
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield HostMetrics(tmp_path / "metrics", "127.0.0.1", port)


@contextlib.contextmanager
def replica(directory: Path, answers: int, *, stay: bool) -> Iterator[int]:
    """A process that writes a replica's files into ``directory``; it stays alive in the block, or has exited."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    args = [sys.executable, "-c", REPLICA, str(answers), "stay" if stay else "exit"]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        if not stay:
            process.wait(timeout=30)
        try:
            yield process.pid
        finally:
            process.kill()


def samples(text: bytes | str) -> dict[str, float]:
    raw = text.decode() if isinstance(text, bytes) else text
    return {s.name: s.value for family in text_string_to_metric_families(raw) for s in family.samples}


def test_counters_of_every_replica_are_summed_and_the_dead_leave_the_live_gauges(host: HostMetrics) -> None:
    with host.joined() as directory:
        pass
    # the second exits without marking itself dead, as a killed replica does
    with replica(directory, 3, stay=True) as living, replica(directory, 5, stay=False):
        before = samples(host.exposition())
        assert before["foldserve_requests_total"] == 8
        assert before["foldserve_workers"] == 2  # the dead one's gauge still counts until it is pruned
        assert len(host.prune()) == 1
        after = samples(host.exposition())
        assert after["foldserve_requests_total"] == 8  # its answers still count: counters never go back
        assert after["foldserve_workers"] == 1
        assert live_pids(directory) == {living}


def test_the_first_replica_of_a_host_starts_afresh_but_not_beside_a_living_one(host: HostMetrics) -> None:
    with host.joined() as directory:
        pass
    with replica(directory, 5, stay=False), replica(directory, 3, stay=True), host.joined():
        assert samples(host.exposition())["foldserve_requests_total"] == 8  # beside a living replica: all kept
    with host.joined():  # nobody alive: the folder is emptied, as a restarted process starts from zero
        assert list(directory.glob("*.db")) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)


async def test_replicas_of_one_host_answer_on_one_port_with_the_same_sum(host: HostMetrics) -> None:
    with host.joined() as directory:
        pass
    with replica(directory, 4, stay=True):
        async with host.serving():
            second = HostMetrics(directory.parent, "127.0.0.1", host.port)  # another replica, the same port
            assert second.directory == directory
            async with second.serving(), httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{host.port}/metrics"
                answers = await asyncio.gather(*(client.get(url, headers={"connection": "close"}) for _ in range(8)))
                assert {r.status_code for r in answers} == {200}
                assert {samples(r.text)["foldserve_requests_total"] for r in answers} == {4}
                assert answers[0].headers["content-type"].startswith("text/plain")
                refused = await client.post(url, content=b"x")
                assert refused.status_code == 405
    assert os.getpid() not in live_pids(directory)  # leaving marks this process dead


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port must be between 0 and 65535, got 70000"):
        HostMetrics(tmp_path, "127.0.0.1", 70000)
