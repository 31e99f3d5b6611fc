"""Start and stop a local ``python -m app serve`` for a load test: free port, wait for /readyz, always stop."""

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

__all__ = ["ServerProcess", "free_port", "resident_memory_bytes", "wait_until_ready"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def resident_memory_bytes(pid: int) -> float | None:
    """Resident set size of process ``pid`` from ``/proc`` (Linux), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        return None
    return None


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

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "FOLDSERVE_GRPC_PORT": "0", "FOLDSERVE_MODEL_STORE": str(self.model_store), **self.env}
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        log = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            if self.log_path and not isinstance(log, int):
                log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode} before /readyz{self._log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"/readyz did not answer 200 within {self.ready_timeout} s{self._log()}")

    def _log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return f"; last lines of {self.log_path}:\n" + "\n".join(self.log_path.read_text().splitlines()[-20:])

    def resident_memory(self) -> float | None:
        """The server's resident set size in bytes, from ``/proc``."""
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
