"""The reproduction report: savings are computed from the measurements, figures are written."""

from __future__ import annotations

from pathlib import Path

from app.training.plots import plot_latency, plot_sweep, plot_training
from app.training.report import render_report

ARCH = {"depth": 18, "width": 4, "activation": "identity", "skips": "standard"}
SIMPLIFICATION = {"kind": "affine", "params_before": 1000, "params_after": 100, "macs_before": 5000, "macs_after": 50}


def _result() -> dict:
    return {
        "name": "linear-tiny",
        "architecture": ARCH,
        "training": {
            "dataset": "digits",
            "split": "80/20",
            "epochs": 2,
            "extra": {"device": "cpu", "train_seconds": 1},
        },
        "accuracy_original": 0.9,
        "accuracy_simplified": 0.9,
        "agreement": 1.0,
        "max_abs_logit_difference": 1e-6,
        "simplification": SIMPLIFICATION,
        "latency": {"cpu": {"original": {1: 1e-3, 64: 8e-3}, "simplified (affine)": {1: 1e-5, 64: 4e-5}}},
    }


def _sweep() -> list[dict]:
    common = {"seed": 0, "width": 4, "epochs": 2, "best_test_accuracy": 0.9, "final_train_loss": 0.1, "device": "cpu"}
    return [
        {**common, "label": "standard skips", "schedule": "none", "t0": None, "test_accuracy": 0.95},
        {**common, "label": "plain CNN (t0 = 0)", "schedule": "linear", "t0": 0.0, "test_accuracy": 0.90},
        {**common, "label": "linear, t0 = 0.5", "schedule": "linear", "t0": 0.5, "test_accuracy": 0.93},
        {**common, "label": "cosine, t0 = 0.5", "schedule": "cosine", "t0": 0.5, "test_accuracy": 0.94},
    ]


def test_report_states_the_measured_savings_beside_the_paper() -> None:
    machine = {"cpu": "test cpu", "cores": 2, "load": 0.5, "gpu": None, "threads": 1, "torch": "x"}
    text = render_report([_result()], _sweep(), machine)
    assert "| `linear-tiny`: 99.0% (100.0x), 99.5% (200.0x) |" in text  # 1 ms -> 10 µs, 8 ms -> 40 µs
    assert "98% less prediction time" in text
    assert "1,000 → 100" in text and "5,000 → 50" in text
    assert "Best annealed schedule here: **cosine, t0 = 0.5** (94.0% mean)" in text
    assert "90.0% for the plain CNN and 95.0% with standard skips" in text


def test_figures_are_written(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "test_accuracy": 0.5, "skip_weight": 0.0}
        for e in (1, 2)
    ]
    plot_training({"a": history, "b": history}, tmp_path / "training.png")
    plot_latency({"a": _result()["latency"]["cpu"]}, tmp_path / "latency.png", "cpu")
    plot_sweep(_sweep(), tmp_path / "sweep.png")
    for name in ("training.png", "latency.png", "sweep.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
