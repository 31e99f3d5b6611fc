"""The foldserve metrics of every replica on one host, summed, on one fixed port of that host.

A scrape through Ray's ingress (HAProxy or Ray's proxy) reaches one replica, so Prometheus could never see the
cluster through it.
Instead each replica keeps its values in prometheus_client's multiprocess files, in a folder shared by the
replicas of its host (the mechanism ``FOLDSERVE_WORKERS`` uses for forked workers), and every replica listens
on the same ``host:port`` with ``SO_REUSEPORT``: whichever of them the kernel hands a scrape to answers with
the sum of all the files, so each host is one Prometheus target whatever its number of replicas, and its
counters carry on when Ray replaces a replica (the dead process's files stay and are still summed).

- A replica that exits cleanly marks itself dead; one that was killed is marked dead by the survivors (they
  look every :data:`PRUNE_PERIOD_S`), so live gauges (queue depth, replicas, memory) count only the living.
- The first replica on a host, when no living replica has files in the folder, empties it: counters then
  restart from zero, as they do when a single process restarts, and Prometheus's ``rate()`` sees a reset.
  The check and the replica's first files happen under a lock, so two replicas starting together agree.
- The folder is named after the address, so replicas that share a listening socket group share a folder,
  and two Ray nodes on one machine (as in ``make ray-test``) do not answer for each other's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from app.serving.resources import enable_multiprocess_values

__all__ = ["PRUNE_PERIOD_S", "HostMetrics", "live_pids"]

logger = logging.getLogger(__name__)

PRUNE_PERIOD_S = 5.0
"""How often a replica marks the replicas of its host that died without saying so."""

_REQUEST_TIMEOUT_S = 5.0  # a scraper that sends no complete request head in this time is dropped
_MAX_REQUEST_BYTES = 16 * 1024
_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db")


def live_pids(directory: Path) -> set[int]:
    """The processes that have live-gauge files in ``directory``, alive or not."""
    return {int(match.group(1)) for path in directory.glob("*.db") if (match := _LIVE_FILE.fullmatch(path.name))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class HostMetrics:
    """The shared folder and listening socket of the replicas of one host.

    Args:
        root: where the folders live; each ``host:port`` gets ``root/<host>_<port>``.
        host: address to listen on (the Ray node's address).
        port: port to listen on, the same on every host; 0 picks a free one (tests).
    """

    def __init__(self, root: Path, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self.host = host
        self.port = port
        self.directory = root / f"{host}_{port}"
        self._server: asyncio.Server | None = None
        self._pruning: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def joined(self) -> Iterator[Path]:
        """Hold the host's lock while this replica makes its first metrics, after emptying a folder of the dead.

        Yields:
            the folder, already named as this process's multiprocess folder.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory.parent / f"{self.directory.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.prune()
            if not live_pids(self.directory):  # no replica alive here: start afresh, as a new process would
                for stale in self.directory.glob("*.db"):
                    stale.unlink()
            enable_multiprocess_values(self.directory)
            yield self.directory

    def prune(self) -> list[int]:
        """Mark dead every process with live-gauge files that no longer runs; returns their ids."""
        dead = [pid for pid in live_pids(self.directory) if not _alive(pid)]
        for pid in dead:
            multiprocess.mark_process_dead(pid, str(self.directory))
        return dead

    def exposition(self) -> bytes:
        """The Prometheus text of every replica of this host, summed."""
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.directory))
        return generate_latest(registry)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Answer scrapes on ``host:port`` and prune the dead until the block ends, then mark this process dead."""
        self._server = await asyncio.start_server(self._answer, sock=self._listening_socket())
        self.port = self._server.sockets[0].getsockname()[1]
        self._pruning = asyncio.get_running_loop().create_task(self._prune_periodically())
        logger.info("foldserve metrics of this host on %s:%d (folder %s)", self.host, self.port, self.directory)
        try:
            yield
        finally:
            self._pruning.cancel()
            self._server.close()
            await asyncio.gather(self._pruning, self._server.wait_closed(), return_exceptions=True)
            multiprocess.mark_process_dead(os.getpid(), str(self.directory))

    def _listening_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # every replica of the host listens here
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_PERIOD_S)
            for pid in await asyncio.to_thread(self.prune):
                logger.info("replica process %d of this host is gone: its live gauges no longer count", pid)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One scrape: any GET gets the exposition; the connection closes after the answer."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT_S)
            if len(head) > _MAX_REQUEST_BYTES or not head.startswith(b"GET "):
                status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
            else:
                status, body, kind = b"200 OK", await asyncio.to_thread(self.exposition), CONTENT_TYPE_LATEST.encode()
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, kind, len(body))
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
