"""What every front door says about a network's logits: softmax probabilities and the top-k classes.

``/predict`` ranks each image's classes and the Open Inference Protocol answers ``probabilities`` and Triton's
classification extension from the same two functions, so the doors agree to the last bit. They work on one row
of Python floats (float64): for the few classes of a request this is several times cheaper than the same
arithmetic in torch, whose per-operation dispatch cost 6-8% of /predict's answers per second on the collapsed
linear model at concurrency 1 (measured with ``python -m loadtest versus``, the two versions side by side).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

__all__ = ["probabilities", "top_k"]


def probabilities(logits: Sequence[float]) -> list[float]:
    """The softmax of one image's logits over its classes, in float64 (float32 loses small probabilities)."""
    peak = max(logits)
    exps = [math.exp(value - peak) for value in logits]
    total = sum(exps)
    return [value / total for value in exps]


def top_k(values: Sequence[float], k: int) -> list[int]:
    """The indices of the ``k`` highest ``values``, highest first; of equal values the lower index comes first."""
    return heapq.nlargest(k, range(len(values)), key=values.__getitem__)
