"""What the front doors share: settings, metrics, the data plane and the process's byte budget for bodies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import Receive

from app.config import Settings
from app.serving.bodies import BodyLimits, ByteBudget, read_body
from app.serving.dataplane import DataPlane
from app.serving.metrics import ServingMetrics

__all__ = ["ServingState"]


@dataclass
class ServingState:
    """One per application, built by :func:`~app.serving.app.create_app` before anything is served."""

    settings: Settings
    metrics: ServingMetrics
    plane: DataPlane
    body_budget: ByteBudget = field(init=False)
    body_limits: BodyLimits = field(init=False)

    def __post_init__(self) -> None:
        self.body_budget = ByteBudget(self.settings.max_inflight_body_bytes, self.settings.retry_after_s)
        self.body_limits = BodyLimits(self.settings.max_body_bytes, self.settings.min_upload_bytes_per_s)

    @contextlib.asynccontextmanager
    async def request_body(self, receive: Receive, headers: Headers, deadline: float) -> AsyncIterator[bytes]:
        """A request's whole body (:func:`~app.serving.bodies.read_body`: the size limit, the deadline, the least
        upload rate), counted in the process's byte budget until the block ends."""
        with self.body_budget.hold() as tally:
            yield await read_body(
                receive, headers, limits=self.body_limits, deadline=deadline, budget=self.body_budget, tally=tally
            )
