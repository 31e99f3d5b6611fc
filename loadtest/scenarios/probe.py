"""A sequential httpx prober that runs beside the load: it sees headers (Retry-After) and recovery."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from loadtest.stats import TRANSPORT_ERROR, RequestRecord, percentile
from loadtest.targets import Target

__all__ = ["Prober", "normal_latency", "recovery_seconds"]


@dataclass
class Prober:
    """Sends ``target`` one request at a time, ``interval`` seconds apart, in a thread, until stopped.

    Record ``start`` is seconds since ``origin`` (a ``time.perf_counter()`` value).
    """

    target: Target
    origin: float
    interval: float = 0.05
    timeout: float = 30.0
    records: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loadtest-prober", daemon=True)

    def start(self) -> None:
        """Start probing."""
        self._thread.start()

    def stop(self) -> list[RequestRecord]:
        """Stop probing (after the request in flight) and return the records."""
        self._stop.set()
        self._thread.join()
        return self.records

    def _loop(self) -> None:
        headers = {"content-type": self.target.content_type} if self.target.content_type else {}
        with httpx.Client(timeout=self.timeout) as client:
            index = 0
            while not self._stop.is_set():
                body = self.target.bodies[index % len(self.target.bodies)] if self.target.bodies else None
                sent = time.perf_counter()
                try:
                    response = client.request(self.target.method, self.target.url, content=body, headers=headers)
                    status, retry_after = response.status_code, response.headers.get("retry-after")
                except httpx.HTTPError:
                    status, retry_after = TRANSPORT_ERROR, None
                latency = time.perf_counter() - sent
                self.records.append(RequestRecord(self.target.label, sent - self.origin, latency, status, retry_after))
                index += 1
                self._stop.wait(self.interval)


def normal_latency(records: list[RequestRecord], before: float) -> float | None:
    """ "Normal" latency for :func:`recovery_seconds`: twice the p50 of the probes answered 200 before ``before``.

    At least the p50 plus 2 ms, for jitter. The probes themselves set the bar, because the prober is its own
    client: a sequential httpx client adds milliseconds that a Go engine's idle p50 does not contain.

    Returns:
        None when no probe before ``before`` was answered 200.
    """
    idle = [r.latency for r in records if r.start < before and r.status == 200]
    if not idle:
        return None
    p50 = percentile(idle, 50)
    return max(2.0 * p50, p50 + 0.002)


def recovery_seconds(records: list[RequestRecord], load_end: float, normal: float, window: int = 5) -> float | None:
    """Seconds after ``load_end`` until ``window`` probes in a row answer 200 within ``normal`` seconds.

    Returns:
        The start of the first such run of probes, relative to ``load_end`` (0 if the service never
        left normal), or None if it never recovered while probed.
    """
    after = sorted((r for r in records if r.start >= load_end), key=lambda r: r.start)
    streak: list[RequestRecord] = []
    for record in after:
        streak = [*streak, record] if record.status == 200 and record.latency <= normal else []
        if len(streak) == window:
            return streak[0].start - load_end
    return None
