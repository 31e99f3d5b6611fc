"""What every front door says about a network's logits: softmax probabilities and the top-k classes.

``/predict`` ranks each image's classes and the Open Inference Protocol answers ``probabilities`` and Triton's
classification extension from the same two functions, so the doors agree to the last bit.
"""

from __future__ import annotations

import torch

__all__ = ["probabilities", "top_k"]


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The softmax of ``[N, K]`` logits over their K classes, in float64 (float32 loses small probabilities)."""
    return torch.softmax(logits.double(), dim=1)


def top_k(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` highest values of ``[N, K]`` ``values`` and their indices, highest first; of equal
    values the lower index comes first."""
    top, indices = torch.sort(values, dim=1, descending=True, stable=True)
    return top[:, :k], indices[:, :k]
