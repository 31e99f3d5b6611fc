"""Running the service: one process, or ``FOLDSERVE_WORKERS`` processes sharing one listening socket.

With several workers, a small pre-fork supervisor (the model of gunicorn's ``preload_app``) binds the socket,
imports torch, torchvision and the app's code once, then forks the workers. Each worker builds its own app
and loads, simplifies and verifies the whole store; what they share is what the import made: about 0.4 GB
of torch's and torchvision's libraries and relocated data, which a fresh (``spawn``) process would make
again for itself. The kernel spreads connections over the workers through the shared socket.

- A worker that dies is logged and replaced, and its live gauges are dropped from the metrics; one that dies
  within ``_CRASH_WINDOW_S`` of starting, five times in a row, stops the supervisor (a broken store or
  setting would fail the same way forever). A replacement loads its models before it accepts a connection
  (its siblings serve meanwhile), and where the store's version of a model fails it serves the version its
  siblings serve, from the copy they keep (:mod:`app.serving.served_copies`, a folder removed at exit).
- SIGTERM or SIGINT to the supervisor sends SIGTERM to each worker, which stops accepting connections and
  lets requests in flight finish for up to ``FOLDSERVE_DRAIN_S`` seconds; workers still running after that
  and a margin are killed. Workers get SIGTERM if the supervisor itself dies.

Metrics: prometheus_client's multiprocess mode. Each worker writes its values to memory-mapped files in
one folder (``FOLDSERVE_METRICS_DIR``, else a fresh temporary folder, emptied at start and removed at exit),
and a scrape of ``/metrics`` on any worker sums the files of all of them.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from app.config import Settings
from app.serving.http import protocol_class
from app.serving.resources import enable_multiprocess_values

__all__ = ["Supervisor", "run_server", "uvicorn_options"]

logger = logging.getLogger("foldserve.workers")

_CRASH_WINDOW_S = 10.0  # a worker that dies this soon after starting counts as a start-up crash
_CRASHES_TO_GIVE_UP = 5
_KILL_MARGIN_S = 5.0  # beyond the drain time, before stragglers are killed


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """The uvicorn options foldserve runs with, whatever the number of workers."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": _log_config(),
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": settings.drain_s,
        "http": protocol_class(settings),
    }


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with foldserve's own loggers (``app.*``: model loading; the supervisor) beside it."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in ("app", "foldserve"):
        config["loggers"][name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run_server(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT: in this process, or in ``settings.workers`` forked worker processes."""
    if settings.workers == 1:
        from app.serving.app import create_app

        app = create_app(settings)
        # uvicorn stops gracefully on SIGTERM, then raises it again for the handler it found, which by default ends
        # the process as killed by the signal (status 143); a graceful stop is a clean exit, status 0, as the
        # supervisor's with several workers
        signal.signal(signal.SIGTERM, _exit_cleanly)
        uvicorn.run(app, **uvicorn_options(settings))  # type: ignore[arg-type]
        return
    with _metrics_dir(settings.metrics_dir) as directory, _scratch_dir("foldserve-served-") as copies:
        enable_multiprocess_values(directory)  # every metric the workers create lives in the folder
        settings = settings.model_copy(update={"metrics_dir": directory})
        from app.serving.app import create_app  # torch, torchvision, prometheus_client: imported once, shared

        config = uvicorn.Config(app=None, **uvicorn_options(settings))  # type: ignore[arg-type]
        listening = config.bind_socket()

        def serve(replacement: bool) -> None:
            app = create_app(settings, served_copies=copies, load_before_serving=replacement)
            worker = uvicorn.Config(app, **uvicorn_options(settings))  # type: ignore[arg-type]
            uvicorn.Server(worker).run(sockets=[listening])

        gc.freeze()  # the garbage collector would otherwise write to, and so copy, every page of the imports
        Supervisor(settings.workers, serve, drain_s=settings.drain_s, listening=listening).run()


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class Supervisor:
    """Forks ``count`` workers that each call ``serve(replacement)``, keeps them running, and stops them on a signal.

    Args:
        count: workers to keep running.
        serve: what a worker does, in the forked process, until it is told to stop; ``replacement`` is true for
            a worker started in place of one that died.
        drain_s: how long workers may take to finish after SIGTERM.
        listening: the shared socket, closed by the supervisor when it stops.
    """

    def __init__(self, count: int, serve: Callable[[bool], None], *, drain_s: float, listening: socket.socket) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.serve = serve
        self.drain_s = drain_s
        self.listening = listening
        self.workers: dict[int, float] = {}  # pid -> start time
        self._stopping = False
        self._crashes = 0

    def run(self) -> None:
        """Start the workers and supervise them until a signal; returns once every worker has exited."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        logger.info("supervisor %d starting %d workers", os.getpid(), self.count)
        for _ in range(self.count):
            self._fork(replacement=False)
        while not self._stopping:
            self._reap()
            time.sleep(0.2)
        self._shutdown()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _fork(self, *, replacement: bool) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent()
                os.setpgid(0, 0)  # a terminal's ^C reaches the supervisor only, which stops the workers once
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                self.serve(replacement)
                code = 0
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        self.workers[pid] = time.monotonic()
        logger.info("worker %d started", pid)

    def _reap(self) -> None:
        for pid, started in list(self.workers.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            del self.workers[pid]
            _mark_dead(pid)
            if self._stopping:
                continue
            lived = time.monotonic() - started
            self._crashes = self._crashes + 1 if lived < _CRASH_WINDOW_S else 0
            logger.error("worker %d exited (%s) after %.1f s; starting another", pid, _describe(status), lived)
            if self._crashes >= _CRASHES_TO_GIVE_UP:
                logger.critical("workers keep dying on start-up: stopping")
                self._stopping = True
                return
            self._fork(replacement=True)

    def _shutdown(self) -> None:
        logger.info("stopping %d workers (drain up to %.0f s)", len(self.workers), self.drain_s)
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_s + _KILL_MARGIN_S
        while self.workers and time.monotonic() < deadline:
            for pid in list(self.workers):
                if os.waitpid(pid, os.WNOHANG)[0] != 0:
                    del self.workers[pid]
                    _mark_dead(pid)
            time.sleep(0.05)
        for pid in self.workers:
            logger.error("worker %d did not stop within the drain time: killed", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.listening.close()


def _mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # its live gauges (queue depth, readiness, memory) no longer count


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


@contextlib.contextmanager
def _scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh private folder, removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _metrics_dir(configured: Path | None) -> Iterator[Path]:
    """The multiprocess metrics folder, emptied: values of an earlier run must not be summed in."""
    if configured is None:
        with _scratch_dir("foldserve-metrics-") as directory:
            yield directory
        return
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob("*.db"):
        stale.unlink()
    yield configured
