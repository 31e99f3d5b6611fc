"""The httpx engine: asyncio clients in this process, every request recorded with its headers.

It tops out at a few hundred requests per second (it shares the CPU with the server), which is why
every report shows its ``/healthz`` ceiling beside the model figures.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx

from loadtest.engines.base import LoadSpec, RunResult
from loadtest.stats import TRANSPORT_ERROR, RequestRecord
from loadtest.targets import Target

__all__ = ["HttpxEngine"]


class HttpxEngine:
    """Closed loop (``concurrency`` clients back to back) or open loop (arrivals at a fixed rate)."""

    name = "httpx"

    def run(self, spec: LoadSpec) -> RunResult:
        """Run ``spec`` to its count or duration bound; see :class:`~loadtest.engines.base.LoadSpec`."""
        return asyncio.run(self._run(spec))

    async def _run(self, spec: LoadSpec) -> RunResult:
        limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        records: list[RequestRecord] = []
        async with httpx.AsyncClient(limits=limits, timeout=spec.timeout) as client:
            origin = time.perf_counter()
            if spec.rate is None:
                sent = await _closed_loop(client, spec, origin, records)
            else:
                sent = await _open_loop(client, spec, origin, records)
            wall = time.perf_counter() - origin
        stopped_by = "count" if sent >= spec.max_requests else "duration"
        return RunResult(engine=self.name, spec=spec, records=records, wall=wall, stopped_by=stopped_by)


def _request_args(spec: LoadSpec, index: int) -> tuple[Target, bytes | None]:
    target = spec.targets[index % len(spec.targets)]
    if not target.bodies:
        return target, None
    return target, target.bodies[(index // len(spec.targets)) % len(target.bodies)]


async def _send(
    client: httpx.AsyncClient, spec: LoadSpec, index: int, origin: float, scheduled: float
) -> RequestRecord:
    target, body = _request_args(spec, index)
    headers = {"content-type": target.content_type} if target.content_type else {}
    try:
        response = await client.request(target.method, target.url, content=body, headers=headers)
        status, retry_after = response.status_code, response.headers.get("retry-after")
    except httpx.HTTPError:
        status, retry_after = TRANSPORT_ERROR, None
    latency = time.perf_counter() - scheduled
    return RequestRecord(target.label, scheduled - origin, latency, status, retry_after)


async def _closed_loop(client: httpx.AsyncClient, spec: LoadSpec, origin: float, out: list[RequestRecord]) -> int:
    counter = itertools.count()
    deadline = origin + spec.max_duration
    sent = 0

    async def client_loop() -> None:
        nonlocal sent
        while (index := next(counter)) < spec.max_requests and time.perf_counter() < deadline:
            sent += 1
            out.append(await _send(client, spec, index, origin, time.perf_counter()))

    await asyncio.gather(*(client_loop() for _ in range(spec.concurrency)))
    return sent


async def _open_loop(client: httpx.AsyncClient, spec: LoadSpec, origin: float, out: list[RequestRecord]) -> int:
    # Latency runs from the scheduled arrival, not the actual send, so a client that falls behind
    # (or waits for a free connection) shows up as latency instead of hiding it (coordinated omission).
    assert spec.rate is not None
    tasks: list[asyncio.Task[RequestRecord]] = []
    for index in range(spec.max_requests):
        offset = index / spec.rate
        if offset >= spec.max_duration:
            break
        scheduled = origin + offset
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_send(client, spec, index, origin, scheduled)))
    out.extend(await asyncio.gather(*tasks))
    return len(tasks)
