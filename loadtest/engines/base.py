"""What every engine takes (:class:`LoadSpec`) and gives back (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from loadtest.stats import RequestRecord
from loadtest.targets import Target

__all__ = ["Engine", "LoadSpec", "RunResult"]


@dataclass(frozen=True)
class LoadSpec:
    """One bounded run: closed loop (``rate`` None) or open loop (``rate`` arrivals per second).

    A run stops at ``max_requests`` sent or ``max_duration`` seconds, whichever comes first; requests
    in flight then finish (or time out after ``timeout``).
    """

    targets: tuple[Target, ...]  # interleaved round-robin when there are several
    concurrency: int  # closed loop: clients; open loop: most requests in flight (connections)
    max_requests: int
    max_duration: float  # seconds
    rate: float | None = None  # open loop: requests per second over all targets; None: closed loop
    timeout: float = 30.0  # seconds per request

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a run needs at least one target")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {self.max_requests}")
        if not self.max_duration > 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {self.max_duration}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests/s or None (closed loop), got {self.rate}")

    @property
    def mode(self) -> str:
        """``closed`` or ``open``."""
        return "closed" if self.rate is None else "open"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (without the image bytes)."""
        return {
            "mode": self.mode,
            "targets": [{"label": t.label, "method": t.method, "url": t.url} for t in self.targets],
            "concurrency": self.concurrency,
            "max_requests": self.max_requests,
            "max_duration_s": self.max_duration,
            "rate_rps": self.rate,
            "timeout_s": self.timeout,
        }


@dataclass
class RunResult:
    """Every request of one run, as the engine recorded it."""

    engine: str
    spec: LoadSpec
    records: list[RequestRecord]
    wall: float  # seconds the engine ran, start to the last answer
    stopped_by: str  # "count" or "duration"
    notes: list[str] = field(default_factory=list)  # what the engine could not see, e.g. hey's transport errors


class Engine(Protocol):
    """A load generator."""

    name: str

    def run(self, spec: LoadSpec) -> RunResult:
        """Send the load ``spec`` describes and return every request's record."""
        ...
