"""Short training runs on real digits: the loss falls, checkpoints load, annealed skips end at exactly 0."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from app.nets import ResNetConfig, build_resnet, skip_weights
from app.simplify import simplify, strip_zero_skips
from app.store import load_checkpoint
from app.training.__main__ import main
from app.training.cli import add_parsers, command_for, config_from_args
from app.training.data import Digits
from app.training.evaluate import evaluate_checkpoint
from app.training.loop import TrainConfig, TrainResult, train
from app.training.record import load_history, load_samples, save_run
from app.training.schedules import SkipSchedule

TINY = ResNetConfig(depth=18, width=4)
STANDARD = TrainConfig(architecture=TINY, epochs=4, batch_size=32, optimizer="adamw", lr=5e-3, augment=False)
ANNEALED = TrainConfig(
    architecture=ResNetConfig(depth=18, width=4, skips="annealed"),
    epochs=3,
    batch_size=64,
    lr=0.05,
    schedule=SkipSchedule(kind="cosine", t0=0.5),
)


@pytest.fixture(scope="module")
def standard_run(digits: Digits) -> TrainResult:
    return train(STANDARD, digits, device="cpu", progress=False, verbose=False)


@pytest.fixture(scope="module")
def annealed_run(digits: Digits) -> TrainResult:
    return train(ANNEALED, digits, device="cpu", progress=False, verbose=False)


def _test_loss(model: torch.nn.Module, digits: Digits) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(digits.test_images), digits.test_labels))


def test_training_lowers_the_loss(standard_run: TrainResult, digits: Digits) -> None:
    torch.manual_seed(STANDARD.seed)
    untrained = build_resnet(TINY)  # the same initial weights train() starts from
    history = standard_run.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"], history
    assert _test_loss(standard_run.model, digits) < 0.8 * _test_loss(untrained, digits)
    assert standard_run.test_accuracy > 0.2  # chance is 0.1
    assert standard_run.device.startswith("cpu")


def test_training_is_seeded(standard_run: TrainResult, digits: Digits) -> None:
    again = train(STANDARD, digits, device="cpu", progress=False, verbose=False)
    assert again.history[-1]["train_loss"] == pytest.approx(standard_run.history[-1]["train_loss"], rel=1e-5)


def test_checkpoint_loads_with_the_same_outputs(standard_run: TrainResult, digits: Digits, tmp_path: Path) -> None:
    command = command_for("resnet18-mnist", "tiny", STANDARD, digits.spec, str(tmp_path))
    manifest = save_run(tmp_path, "tiny", STANDARD, digits, standard_run, command)
    loaded_manifest, model = load_checkpoint(tmp_path)
    assert loaded_manifest == manifest
    with torch.no_grad():
        torch.testing.assert_close(model(digits.test_images), standard_run.model(digits.test_images))
    training = manifest.training
    assert training is not None and training.test_accuracy == standard_run.test_accuracy
    assert training.command.startswith("python -m app train --preset resnet18-mnist --name tiny")
    assert training.extra["data"]["limit"] == 400 and training.extra["device"].startswith("cpu")
    assert manifest.input.mean == [digits.mean] and manifest.input.std == [digits.std]
    assert load_history(tmp_path) == standard_run.history
    images, labels = load_samples(tmp_path)
    assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert sorted(set(labels.tolist())) == sorted(set(digits.test_labels.tolist()))
    report = evaluate_checkpoint(tmp_path)  # rebuilds the test set from the manifest alone
    assert report["test_size"] == len(digits.test_labels)
    assert report["accuracy_original"] == pytest.approx(standard_run.test_accuracy, abs=1e-6)
    assert report["agreement"] == 1.0 and report["simplification"]["kind"] == "batchnorm-folded"


def test_annealed_training_ends_with_every_skip_weight_exactly_zero(annealed_run: TrainResult) -> None:
    weights = skip_weights(annealed_run.model)
    assert len(weights) == 8 and all(w == 0.0 for w in weights), weights
    per_epoch = [row["skip_weight"] for row in annealed_run.history]
    assert per_epoch[0] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi / 1.5)).item()))
    assert per_epoch[1:] == [0.0, 0.0]


def test_stripping_the_annealed_skips_changes_no_output(annealed_run: TrainResult, digits: Digits) -> None:
    model = annealed_run.model.eval()
    stripped = strip_zero_skips(model).eval()
    assert skip_weights(stripped) == []
    with torch.no_grad():
        expected, got = model(digits.test_images), stripped(digits.test_images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    simplified = simplify(model, (1, 28, 28), samples=digits.test_images[:16])
    assert simplified.report["kind"] == "skips-stripped"
    assert simplified.report["max_rel_error"] < 1e-5


def test_command_in_the_manifest_rebuilds_the_same_recipe(digits: Digits) -> None:
    command = command_for("annealed-resnet18-mnist", "x", ANNEALED, digits.spec, "out/x")
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(command.split()[3:])
    name, config, spec = config_from_args(args)
    assert (name, config, spec) == ("x", ANNEALED, digits.spec)


def test_cli_evaluate_prints_both_accuracies(
    standard_run: TrainResult, digits: Digits, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_run(tmp_path, "tiny", STANDARD, digits, standard_run, "python -m app train")
    assert main(["evaluate", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "tiny" and report["accuracy_simplified"] == pytest.approx(report["accuracy_original"])
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
