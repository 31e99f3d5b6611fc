"""Skip-weight schedules: values at the edges (start, t0, after t0) and the shape in between."""

from __future__ import annotations

import itertools
import math

import pytest

from app.training.schedules import SkipSchedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_starts_at_one_and_is_exactly_zero_from_t0_on(kind: str) -> None:
    schedule = SkipSchedule(kind=kind, t0=0.5, unit="fraction")  # t0 = epoch 5 of 10
    assert schedule.weight(0.0, 10) == 1.0
    assert 0.0 < schedule.weight(4.999, 10) < 1e-3
    for t in (5.0, 5.0001, 7.3, 10.0, 11.0):
        assert schedule.weight(t, 10) == 0.0  # exactly zero, not merely small
        assert math.copysign(1.0, schedule.weight(t, 10)) == 1.0  # and not -0.0


def test_linear_and_cosine_shapes_between_start_and_t0() -> None:
    linear = SkipSchedule(kind="linear", t0=4, unit="epochs")
    cosine = SkipSchedule(kind="cosine", t0=4, unit="epochs")
    assert linear.weight(1.0, 10) == pytest.approx(0.75)
    assert linear.weight(2.0, 10) == pytest.approx(0.5)
    assert cosine.weight(2.0, 10) == pytest.approx(0.5)
    assert cosine.weight(1.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.854: slow start
    assert cosine.weight(3.0, 10) == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))  # 0.146: slow finish
    steps = [i / 8 for i in range(33)]
    for schedule in (linear, cosine):
        values = [schedule.weight(t, 10) for t in steps]
        assert all(a >= b for a, b in itertools.pairwise(values)), values


def test_t0_in_epochs_and_as_fraction_agree() -> None:
    by_fraction = SkipSchedule(t0=0.25, unit="fraction")
    by_epochs = SkipSchedule(t0=5, unit="epochs")
    assert by_fraction.t0_epochs(20) == by_epochs.t0_epochs(20) == 5
    for t in (0.0, 1.3, 4.9, 5.0, 19.0):
        assert by_fraction.weight(t, 20) == by_epochs.weight(t, 20)


def test_t0_zero_means_no_skips_from_the_first_step() -> None:
    assert SkipSchedule(t0=0.0).weight(0.0, 10) == 0.0


def test_t0_at_the_very_end_reaches_zero_at_the_end() -> None:
    schedule = SkipSchedule(t0=1.0, unit="fraction")
    assert schedule.weight(9.9, 10) == pytest.approx(0.01)
    assert schedule.weight(10.0, 10) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "step"}, "schedule kind must be one of"),
        ({"t0": 1.5, "unit": "fraction"}, r"t0 must be \[0, 1\]"),
        ({"t0": -1.0, "unit": "epochs"}, "t0 must be >= 0"),
        ({"unit": "steps"}, "schedule unit must be"),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SkipSchedule(**kwargs)


def test_t0_after_the_end_of_the_run_is_refused() -> None:
    with pytest.raises(ValueError, match="after the end of a 10-epoch run"):
        SkipSchedule(t0=12, unit="epochs").weight(0.0, 10)


def test_round_trips_through_a_dict() -> None:
    schedule = SkipSchedule(kind="cosine", t0=3, unit="epochs")
    assert SkipSchedule.from_dict({**schedule.to_dict(), "t0_epochs": 3}) == schedule
