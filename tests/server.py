"""The suite's real servers and its one way of waiting: ``python -m app serve`` in a child process, and
:func:`eventually` / :func:`eventually_async` for every condition a test waits on.

A test that needs sockets (a slow client, Triton's clients, gRPC, several workers) starts a :class:`Server` on
a free loopback port; leaving its context stops it by pid (SIGTERM, then SIGKILL). Readiness is ``/readyz``
and, with several workers (where one ``/readyz`` answer speaks for the worker that took the connection), one
``/metrics`` scrape, which counts them all (``foldserve_workers``, and ``foldserve_model_ready`` as their minimum).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["FAST_LOAD", "Server", "eventually", "eventually_async", "free_port"]

T = TypeVar("T")

FAST_LOAD = {"FOLDSERVE_WARMUP_RUNS": "1", "FOLDSERVE_SPEEDUP_ROUNDS": "2", "FOLDSERVE_SPEEDUP_BLOCK_SECONDS": "0"}
"""Settings that make a test server load in a second or two: one warm-up pass, two short timing rounds."""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def eventually(condition: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something true, and return that; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(interval)
    return value


async def eventually_async(
    condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = 30.0, interval: float = 0.01
) -> T:
    """:func:`eventually` in an event loop: ``condition`` may return an awaitable; the loop runs between tries."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


class Server:
    """``python -m app serve`` on ``store``, listening on 127.0.0.1 only, with its output in ``log``.

    Entering starts it and waits until every worker serves and every model has finished loading (or raises with
    the log's last lines); leaving stops it. The server serves gRPC only where ``env`` sets ``FOLDSERVE_GRPC_PORT``.

    Args:
        store: the ``FOLDSERVE_MODEL_STORE``.
        log: file for the server's stdout and stderr.
        env: ``FOLDSERVE_*`` settings on top of :data:`FAST_LOAD`.
        ready_timeout: seconds to wait for readiness.
    """

    def __init__(self, store: Path, log: Path, env: Mapping[str, str] | None = None, ready_timeout: float = 90.0):
        self.store, self.log, self.ready_timeout = Path(store), Path(log), ready_timeout
        self.env = {**FAST_LOAD, "FOLDSERVE_GRPC_PORT": "0", **(env or {})}
        self.workers = int(self.env.get("FOLDSERVE_WORKERS", "1"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        environment = {**os.environ, "FOLDSERVE_MODEL_STORE": str(self.store), **self.env}
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(self.is_ready, f"the server on {self.store.name} ready", self.ready_timeout, interval=0.1)
        except BaseException as error:
            self.stop()
            raise RuntimeError(f"{error}; last lines of {self.log}:\n{self.tail()}") from error
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The server's process id (the supervisor's, with several workers)."""
        assert self.process is not None, "the server was never started"
        return self.process.pid

    def is_ready(self) -> bool:
        """Every worker serves and every model has finished loading (raises if the server has exited)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited with code {self.process.returncode}")
        try:
            samples = self.scrape()
            answered = httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False
        # /readyz: every model of the worker that answered has finished loading. With several workers, every model
        # must serve in all of them (foldserve_model_ready is their minimum).
        ready = [v for (name, _), v in samples.items() if name == "foldserve_model_ready"]
        everywhere = self.workers == 1 or (bool(ready) and min(ready) == 1)
        return answered and samples.get(("foldserve_workers", ()), 0.0) == self.workers and everywhere

    def scrape(self) -> Samples:
        """Every sample of one ``/metrics`` scrape, keyed by name and sorted labels."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).raise_for_status().text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        """One sample of a fresh scrape, None where the series does not exist."""
        return self.scrape().get((name, tuple(sorted(labels.items()))))

    def worker_pids(self) -> set[int]:
        """The supervisor's children: its workers."""
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return {int(pid) for pid in out.split()}

    def resident_bytes(self) -> float:
        """Resident set size of the server and its workers, from ``/proc``."""
        total = 0.0
        for pid in {self.pid, *self.worker_pids()}:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += float(line.split()[1]) * 1024.0
        return total

    def tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if it has already exited."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
