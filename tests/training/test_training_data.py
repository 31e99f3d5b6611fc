"""MNIST digits: the seeded split, its normalisation and its record."""

from __future__ import annotations

import pytest
import torch

from app.training.data import DataSpec, Digits, find_sample_csv, load_digits


def test_sample_split_shapes_and_labels(digits: Digits) -> None:
    assert digits.train_images.shape == (320, 1, 28, 28)
    assert digits.test_images.shape == (80, 1, 28, 28)
    assert digits.train_images.dtype == torch.float32
    assert digits.train_labels.dtype == torch.int64
    assert set(digits.train_labels.tolist()) == set(range(10))
    assert digits.spec.source == "sample"
    assert "320 train / 80 test" in digits.split and "seed 0" in digits.split


def test_normalised_with_the_training_statistics(digits: Digits) -> None:
    assert 0.05 < digits.mean < 0.25 and 0.2 < digits.std < 0.45  # MNIST: about 0.13 and 0.31
    assert float(digits.train_images.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(digits.train_images.std()) == pytest.approx(1.0, abs=1e-3)
    black = (0.0 - digits.mean) / digits.std
    assert float(digits.train_images.min()) == pytest.approx(black, abs=1e-5)


def test_split_is_fixed_by_the_seed_and_disjoint(digits: Digits) -> None:
    again = load_digits(DataSpec(source="sample", limit=400, seed=0))
    other = load_digits(DataSpec(source="sample", limit=400, seed=1))
    torch.testing.assert_close(again.test_images, digits.test_images, rtol=0, atol=0)
    assert not torch.equal(other.test_labels, digits.test_labels)
    train_rows = {tuple(x.flatten().tolist()) for x in digits.train_images}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in digits.test_images)


def test_auto_falls_back_to_the_sample_without_torchvision_data(tmp_path) -> None:
    data = load_digits(DataSpec(source="auto", data_dir=str(tmp_path), limit=100))
    assert data.spec.source == "sample" and len(data.test_labels) == 20
    assert find_sample_csv().name == "mnist_5k.csv.gz"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"test_fraction": 0.0}, "test_fraction must be in"), ({"limit": 5}, "limit must be >= 20")],
)
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataSpec(**kwargs)


def test_spec_round_trips_through_a_dict() -> None:
    spec = DataSpec(source="sample", test_fraction=0.3, seed=4, limit=200)
    assert DataSpec.from_dict(spec.to_dict()) == spec
