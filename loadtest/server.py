"""Start and stop a local server (foldserve, or the reference) for a load test: free port, wait until ready, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from loadtest.proctree import process_tree
from loadtest.promtext import parse_metrics

__all__ = [
    "ReferenceProcess",
    "ServerProcess",
    "free_port",
    "resident_memory_bytes",
    "wait_until_all_ready",
    "wait_until_ready",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def resident_memory_bytes(pid: int) -> float | None:
    """Resident set size of process ``pid`` and its descendants (workers) from ``/proc``, or None if unreadable."""
    total = None
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                total = (total or 0.0) + float(line.split()[1]) * 1024.0
    return total


def wait_until_ready(base_url: str, models: list[str], timeout: float = 300.0) -> None:
    """Wait until ``GET /models/{name}`` says ``ready`` for every model; raise if one failed or time runs out.

    ``/readyz`` turns 200 once every model has finished loading and one is ready, which a model that failed does
    not prevent (unless ``FOLDSERVE_STRICT_READINESS``); this waits for the named models to be ready themselves.
    """
    deadline = time.monotonic() + timeout
    waiting = list(models)
    while waiting:
        response = httpx.get(f"{base_url.rstrip('/')}/models/{waiting[0]}", timeout=10.0)
        if response.status_code == 404:
            raise ValueError(f"the server has no model {waiting[0]!r}")
        info = response.raise_for_status().json()
        if info.get("status") == "failed":
            raise RuntimeError(f"model {waiting[0]!r} failed to load: {info.get('reason')}")
        if info.get("status") == "ready":
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"model {waiting[0]!r} was not ready within {timeout} s (status {info.get('status')})")
        time.sleep(0.5)


def wait_until_all_ready(base_url: str, workers: int, timeout: float = 300.0) -> dict[str, str]:
    """Wait until ``foldserve_workers`` equals ``workers`` and every model is ready (or failed) in every worker.

    With several worker processes one ``/readyz`` or ``/models/{name}`` answer speaks for the worker that took
    the connection only; ``/metrics`` sums all of them, and ``foldserve_model_ready`` is their minimum. A worker
    creates every model's series (at 0) before it counts itself in ``foldserve_workers``. A model that is not
    ready is asked after through ``/models/{name}``: one that failed to load is done (it fails in every worker).

    Returns:
        ``{model: "ready" | "failed"}``.
    """
    base_url = base_url.rstrip("/")
    deadline = time.monotonic() + timeout
    failed: set[str] = set()
    while True:
        metrics = parse_metrics(httpx.get(f"{base_url}/metrics", timeout=10.0).raise_for_status().text)
        running = metrics.value("foldserve_workers") or 0.0
        ready = {dict(ls)["model"]: v for (n, ls), v in metrics.samples.items() if n == "foldserve_model_ready"}
        waiting = sorted(m for m, v in ready.items() if v < 1 and m not in failed)
        if running == workers and ready and not waiting:
            return {m: "failed" if m in failed else "ready" for m in ready}
        for model in waiting:
            if httpx.get(f"{base_url}/models/{model}", timeout=10.0).json().get("status") == "failed":
                failed.add(model)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not ready within {timeout} s: {running:g} of {workers} workers serving, models waiting {waiting}"
            )
        time.sleep(0.5)


class ServerProcess:
    """``python -m app serve`` in a child process, listening on 127.0.0.1 only.

    Use as a context manager: entering starts the server and waits until ``/readyz`` answers 200 (or
    raises, with the server's log, after ``ready_timeout`` seconds); leaving always stops it (SIGTERM,
    then SIGKILL).

    Args:
        model_store: the ``FOLDSERVE_MODEL_STORE`` the server reads.
        port: port to listen on; None picks a free one.
        env: extra ``FOLDSERVE_*`` settings. The server serves no gRPC unless they set ``FOLDSERVE_GRPC_PORT``
            (its default port is fixed, and load tests drive HTTP).
        ready_timeout: seconds to wait for ``/readyz``.
        log_path: where the server's output goes; None: a file next to nothing (discarded at exit).
    """

    def __init__(
        self,
        model_store: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
        log_path: Path | None = None,
    ) -> None:
        self.model_store = Path(model_store)
        self.port = port or free_port()
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    ready_path = "/readyz"  # answers 200 once the server can serve

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    @property
    def pid(self) -> int | None:
        """The server's process id (the supervisor's, with several workers), None before it starts."""
        return self.process.pid if self.process else None

    def __enter__(self) -> ServerProcess:
        self.start()
        self.wait_ready()
        return self

    def start(self) -> None:
        """Start the process and return at once (:meth:`wait_ready` waits for it; :meth:`stop` stops it)."""
        env = {**os.environ, "FOLDSERVE_GRPC_PORT": "0", "FOLDSERVE_MODEL_STORE": str(self.model_store), **self.env}
        log = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            if self.log_path and not isinstance(log, int):
                log.close()

    def wait_ready(self) -> None:
        """Wait until :attr:`ready_path` answers 200; on failure or timeout stop the server and raise."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {self.process.returncode} before {self.ready_path}{self._log()}"
                )
            try:
                if httpx.get(f"{self.base_url}{self.ready_path}", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.ready_path} did not answer 200 within {self.ready_timeout} s{self._log()}")

    def _log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return f"; last lines of {self.log_path}:\n" + "\n".join(self.log_path.read_text().splitlines()[-20:])

    def resident_memory(self) -> float | None:
        """The server's resident set size in bytes (its workers' included), from ``/proc``."""
        return resident_memory_bytes(self.process.pid) if self.process else None

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ReferenceProcess(ServerProcess):
    """``python -m loadtest reference`` in a child process: the yardstick foldserve is measured against.

    It loads every model before it listens, so ``/healthz`` answering 200 means ready.

    Args:
        model_store: the store it serves.
        threads: torch intra-op threads; None: its default (cores - 1, as foldserve's).
        runtimes: the runtimes its variants are chosen among, as ``FOLDSERVE_RUNTIMES``.
        port, ready_timeout, log_path: as for :class:`ServerProcess`.
    """

    ready_path = "/healthz"

    def __init__(
        self,
        model_store: Path,
        *,
        threads: int | None = None,
        runtimes: str = "auto",
        port: int | None = None,
        ready_timeout: float = 120.0,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(model_store, port=port, ready_timeout=ready_timeout, log_path=log_path)
        self.threads = threads
        self.runtimes = runtimes

    def command(self) -> list[str]:
        """``python -m loadtest reference --store STORE --port PORT --runtimes R [--threads N]``."""
        command = [sys.executable, "-m", "loadtest", "reference", "--store", str(self.model_store)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--runtimes", self.runtimes]
        return command + (["--threads", str(self.threads)] if self.threads else [])
