"""What the front doors share: settings, metrics, the process's byte budget and, once started, the data plane."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.config import Settings
from app.serving.bodies import ByteBudget
from app.serving.dataplane import DataPlane
from app.serving.metrics import ServingMetrics
from app.serving.v2.service import InferenceService

__all__ = ["ServingState"]


@dataclass
class ServingState:
    """One per application; :attr:`plane` and :attr:`v2` are set by the lifespan once the registry exists."""

    settings: Settings
    metrics: ServingMetrics
    body_budget: ByteBudget = field(init=False)
    plane: DataPlane | None = None
    v2: InferenceService | None = None  # the Open Inference Protocol over plane, for its REST and gRPC doors

    def __post_init__(self) -> None:
        self.body_budget = ByteBudget(self.settings.max_inflight_body_bytes, self.settings.retry_after_s)
