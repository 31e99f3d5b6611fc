"""Softmax and top-k, the one implementation every front door answers with."""

import math

import torch

from app.serving.scores import probabilities, top_k


def test_probabilities_are_the_float64_softmax() -> None:
    logits = [3.0, -1.5, 0.25, 1000.0, 999.0]  # a large logit: computed from the peak, so nothing overflows
    chances = probabilities(logits)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0).tolist()
    assert max(abs(a - b) for a, b in zip(chances, expected, strict=True)) < 1e-15
    assert math.isclose(sum(chances), 1.0, rel_tol=1e-15)
    assert math.isclose(chances[3] / chances[4], math.e, rel_tol=1e-15)


def test_top_k_is_highest_first_and_the_lower_index_wins_a_tie() -> None:
    assert top_k([0.1, 0.5, 0.2, 0.5, 0.0], 3) == [1, 3, 2]
    assert top_k([1.0, 1.0, 1.0], 2) == [0, 1]
    assert top_k([0.3, 0.7], 5) == [1, 0]  # k past the classes: every class
