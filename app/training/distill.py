"""Distillation: a student learns from a frozen teacher's logits as well as from the labels (Hinton et al., 2015).

``anneal`` distils the network it starts from into the same network losing its skips, so that the fine-tune keeps
what the original knew instead of relearning it from the labels alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Distillation"]


@dataclass(frozen=True)
class Distillation:
    """A frozen teacher whose logits the student also learns from (Hinton et al., 2015)."""

    teacher: nn.Module  # in eval mode; never updated
    weight: float = 1.0  # of the distillation term, beside a cross-entropy of weight 1 on the labels
    temperature: float = 2.0  # both softmaxes are taken at this temperature; the term is scaled by its square

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"distillation weight must be >= 0, got {self.weight}")
        if self.temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {self.temperature}")

    def loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``weight * T^2 * KL(teacher || student)`` at temperature ``T``, averaged over the batch."""
        with torch.no_grad():
            target = F.log_softmax(self.teacher(x).float() / self.temperature, dim=1)
        student = F.log_softmax(logits / self.temperature, dim=1)
        kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
        return self.weight * self.temperature**2 * kl
