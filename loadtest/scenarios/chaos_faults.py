"""The soak's faults and memory samples: store rewrites (reloads), worker kills, slow uploads, oversized images,
and PSS per worker.

With several workers the repository API refuses loads (409: a call reaches one worker), so the server runs with
``FOLDSERVE_MODEL_CONTROL=poll`` and a reload is a rewrite of the model's folder in the store: a good version
(the shipped weights, a new manifest version) or a corrupt one (weights whose bytes no longer match the manifest's
sha256), in turn. Every worker notices the change at its next poll.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from loadtest.proctree import alive, children, tree_memory

__all__ = ["Faults", "fault_times"]

NOMINAL_PERIODS_S = {"reload": 60.0, "kill": 300.0, "burst": 600.0}
"""Seconds between faults of each kind in an hour-long soak."""

_FRACTION_OF_RUN = {"reload": 1 / 4, "kill": 1 / 2.5, "burst": 1 / 2}  # shorter runs: each kind at least once
BURST_SIZE = 8  # slow uploads, and as many oversized images, per burst


def fault_times(duration: float, quiet: float) -> list[tuple[float, str]]:
    """``(seconds since the start, kind)`` of every fault, in time order, after ``quiet`` seconds without any.

    A kind's period is its nominal one, or a fraction of the faulted part of the run where that is shorter, so a
    short run still has each kind; the first one falls half a period in.
    """
    span, out = duration - quiet, []
    for kind, nominal in NOMINAL_PERIODS_S.items():
        period = min(nominal, span * _FRACTION_OF_RUN[kind])
        t = quiet + period / 2
        while t < duration - 2.0:
            out.append((t, kind))
            t += period
    return sorted(out)


def _oversized_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")  # 25 Mpx, over the 4096 x 4096 limit
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_bytes(data)
    os.replace(scratch, path)  # a poll sees the old file or the new one, never half of it


class Faults:
    """Applies the faults to a running server and keeps what each did.

    Args:
        client: the load's :class:`~loadtest.scenarios.chaos_client.Client` (its in-flight requests are marked at
            each kill). supervisor: the server's supervisor pid. folder: the model's folder in the (temporary)
            store. origin: the run's ``perf_counter`` origin. poll_s: the workers' ``FOLDSERVE_MODEL_POLL_S``.
    """

    def __init__(self, client: Any, supervisor: int, folder: Path, origin: float, poll_s: float) -> None:
        self.client, self.supervisor, self.folder = client, supervisor, folder
        self.origin, self.poll_s = origin, poll_s
        self.weights = (folder / "weights.safetensors").read_bytes()
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.reloads: list[dict[str, Any]] = []
        self.kills: list[dict[str, Any]] = []
        self.bursts: list[dict[str, Any]] = []
        self.memory: list[dict[str, Any]] = []
        self._checks: set[asyncio.Task[None]] = set()
        self.spared: int | None = None

    def now(self) -> float:
        return time.perf_counter() - self.origin

    async def run(self, schedule: list[tuple[float, str]]) -> None:
        """Apply each fault at its time."""
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, at - self.now()))
            await {"reload": self.reload, "kill": self.kill, "burst": self.burst}[kind]()
        if self._checks:
            await asyncio.wait(self._checks)

    async def reload(self) -> None:
        """Rewrite the model's folder: good and corrupt in turn; its outcome is read back a little later."""
        n = len(self.reloads)
        good = n % 2 == 0
        version = str(100 + n)
        weights = self.weights if good else self.weights[:1024] + bytes(b ^ 0xFF for b in self.weights[1024:2048])
        weights += b"" if good else self.weights[2048:]
        _write(self.folder / "weights.safetensors", weights)
        _write(self.folder / "manifest.json", json.dumps({**self.manifest, "version": version}).encode())
        entry = {"t": self.now(), "kind": "good" if good else "corrupt", "version": version}
        self.reloads.append(entry)
        task = asyncio.create_task(self._outcome(entry))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _outcome(self, entry: dict[str, Any], patience: float = 20.0) -> None:
        """Ask the index (one worker answers each time) every second until the change shows, or ``patience`` s."""
        deadline = self.now() + patience
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                index = (await self.client.http.post("/v2/repository/index", json={})).json()
            except (httpx.HTTPError, ValueError) as error:
                entry.update(outcome=f"unknown: {type(error).__name__}")
                continue
            seen = next((m for m in index if m["name"] == self.folder.name), {})
            entry.update(served_version=seen.get("version"), state=seen.get("state"), reason=seen.get("reason", ""))
            served = seen.get("version") == entry["version"]
            failed = bool(seen.get("reason")) and seen.get("state") == "READY"
            ok = served if entry["kind"] == "good" else (failed and not served)
            entry.update(outcome="as expected" if ok else "NOT as expected", seen_after_s=self.now() - entry["t"])
            if ok or self.now() > deadline:
                return

    async def kill(self) -> None:
        """SIGKILL one worker, never the one spared (the first worker, while it lives); mark the requests in flight
        from the signal until the worker is dead (its sockets closed: a zombie, or gone), tens of milliseconds."""
        workers = children(self.supervisor)
        if not workers:
            self.kills.append({"t": self.now(), "pid": None, "in_flight": 0})
            return
        if self.spared is None or self.spared not in workers:
            self.spared = workers[0]  # lives the whole run: its PSS shows what every reload leaves behind
        pid = next((w for w in workers if w != self.spared), workers[0])
        killed = self.now()
        os.kill(pid, signal.SIGKILL)
        while alive(pid) and self.now() < killed + 5.0:
            await asyncio.sleep(0.001)
        dead = self.now()
        in_flight = self.client.mark_in_flight(killed, dead)
        entry = {"t": killed, "dead_after_s": dead - killed, "pid": pid, "in_flight": in_flight}
        self.kills.append(entry)
        task = asyncio.create_task(self._replaced(entry))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _replaced(self, entry: dict[str, Any], patience: float = 180.0) -> None:
        """Note when the replacement serves every model: ``foldserve_workers`` back to 2 and each model's
        ``foldserve_model_ready`` (the least over the live workers) 1."""
        while self.now() < entry["t"] + patience:
            await asyncio.sleep(0.5)
            try:
                text = (await self.client.http.get("/metrics")).text
            except httpx.HTTPError:
                continue
            lines = [line for line in text.splitlines() if not line.startswith("#")]
            workers = [float(line.split()[-1]) for line in lines if line.startswith("foldserve_workers ")]
            ready = [float(line.split()[-1]) for line in lines if line.startswith("foldserve_model_ready{")]
            if workers == [2.0] and ready and min(ready) == 1.0:
                entry["replacement_serving_after_s"] = self.now() - entry["t"]
                return

    async def burst(self) -> None:
        """Slow uploads (a body trickled at 10 bytes/s) and oversized images at the same time; their statuses."""
        started = self.now()
        # encoded off the event loop: on the loop that sends the load it would hold up every body being sent, and
        # the server would rightly time those out at the least upload rate
        png = await asyncio.to_thread(_oversized_png)
        statuses = await asyncio.gather(
            *(self._slow_upload() for _ in range(BURST_SIZE)), *(self._oversized(png) for _ in range(BURST_SIZE))
        )
        slow, big = statuses[:BURST_SIZE], statuses[BURST_SIZE:]
        self.bursts.append({"t": started, "slow_upload_statuses": slow, "oversized_statuses": big})

    async def _slow_upload(self) -> str:
        host, port = self.client.base_url.removeprefix("http://").split(":")
        body = self.client.models[self.folder.name][0][1]
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as error:
            return f"no answer: {type(error).__name__}"
        head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())

        async def trickle() -> None:
            try:
                for i in range(0, len(body), 10):
                    writer.write(body[i : i + 10])
                    await writer.drain()
                    await asyncio.sleep(1.0)
            except OSError:
                return  # the server closed the connection: the reader sees it

        sender = asyncio.create_task(trickle())
        try:  # the server answers (408) or closes before the body is done, or the 30 s are up
            line = await asyncio.wait_for(reader.readline(), timeout=30.0)
            return line.decode(errors="replace").split(" ")[1] if line else "closed"
        except (TimeoutError, OSError, IndexError) as error:
            return f"no answer: {type(error).__name__}"
        finally:
            sender.cancel()
            writer.close()

    async def _oversized(self, png: bytes) -> str:
        try:
            headers = {"content-type": "image/png"}
            r = await self.client.http.post("/predict", content=png, headers=headers)
        except httpx.HTTPError as error:
            return f"no answer: {type(error).__name__}"
        return str(r.status_code)

    async def sample_memory(self, every: float, until: float) -> None:
        """PSS and RSS of every worker every ``every`` seconds until ``until`` seconds after the origin."""
        while self.now() < until:
            t = self.now()
            for p in tree_memory(self.supervisor):
                if p.role == "worker" and p.pss is not None:
                    self.memory.append(
                        {"t": t, "pid": p.pid, "pss_bytes": p.pss, "rss_bytes": p.rss, "uss_bytes": p.uss}
                    )
            await asyncio.sleep(every)
