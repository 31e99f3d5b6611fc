"""Skip-weight schedules: the homotopy from a ResNet to a plain CNN (Joyce & Verschelde, section 4).

Every annealed skip is scaled by a weight ``s(t)`` that starts at 1 and reaches 0 at time ``t0``; from
``t0`` to the end of training it is exactly ``0.0``, so the trained network's skips can be deleted without
changing a single output. The loop calls :meth:`SkipSchedule.weight` before every optimisation step with
the training time measured in (fractional) epochs, so the weight falls smoothly within an epoch too.

``t0`` is given in epochs or as a fraction of the run. ``t0 = 0`` means the skips are off from the first
step: the network is trained as a plain CNN, the baseline the homotopy is meant to beat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["SCHEDULE_KINDS", "SkipSchedule"]

SCHEDULE_KINDS = ("linear", "cosine")
"""Shapes of the fall from 1 to 0: a straight line, or half a cosine (slow start, slow finish)."""


@dataclass(frozen=True)
class SkipSchedule:
    """How the skip weight falls from 1 at the start of training to exactly 0 at ``t0``."""

    kind: Literal["linear", "cosine"] = "linear"  # shape of the fall, see SCHEDULE_KINDS
    t0: float = 0.5  # when the weight reaches 0, in the unit below
    unit: Literal["fraction", "epochs"] = "fraction"  # fraction: of the whole run; epochs: absolute

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if self.unit not in ("fraction", "epochs"):
            raise ValueError(f"schedule unit must be 'fraction' or 'epochs', got {self.unit!r}")
        if self.t0 < 0 or (self.unit == "fraction" and self.t0 > 1):
            limit = "[0, 1]" if self.unit == "fraction" else ">= 0"
            raise ValueError(f"t0 must be {limit} when given in {self.unit}, got {self.t0}")

    def t0_epochs(self, epochs: int) -> float:
        """``t0`` in epochs for a run of ``epochs`` epochs.

        Raises:
            ValueError: when ``t0`` falls after the end of the run, so the skips would never reach 0.
        """
        t0 = self.t0 * epochs if self.unit == "fraction" else self.t0
        if t0 > epochs:
            raise ValueError(f"t0 = {self.t0} epochs is after the end of a {epochs}-epoch run; skips would not reach 0")
        return t0

    def weight(self, t: float, epochs: int) -> float:
        """The skip weight at training time ``t`` (in epochs, from 0) of a run of ``epochs`` epochs."""
        t0 = self.t0_epochs(epochs)
        if t >= t0:
            return 0.0  # exactly zero from t0 on: this is what makes the skips strippable
        if t <= 0:
            return 1.0
        progress = t / t0
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkipSchedule:
        return cls(**{k: data[k] for k in ("kind", "t0", "unit") if k in data})

    def describe(self, epochs: int) -> str:
        """One line for logs and reports, e.g. ``linear to 0 at epoch 7.5 of 15``."""
        return f"{self.kind} to 0 at epoch {self.t0_epochs(epochs):g} of {epochs}"
