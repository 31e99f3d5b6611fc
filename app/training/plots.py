"""The reports' figures: training curves, latency against batch size, the t0 sweep, and an annealing fine-tune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

__all__ = ["plot_anneal", "plot_latency", "plot_sweep", "plot_training"]


def plot_training(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Loss and test accuracy per epoch for each model, with the skip weight overlaid."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], histories.items(), strict=True):
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["train_loss"] for r in rows], label="train loss", color="tab:blue")
        ax.plot(epochs, [r["test_loss"] for r in rows], label="test loss", color="tab:blue", linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy")
        ax.set_title(name)
        right = ax.twinx()
        right.plot(epochs, [r["test_accuracy"] for r in rows], label="test accuracy", color="tab:green")
        weights = [1.0] + [r["skip_weight"] for r in rows]  # every skip starts at weight 1 at epoch 0
        right.plot([0, *epochs], weights, label="skip weight (end of epoch)", color="tab:red", marker=".")
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel("accuracy / skip weight")
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(latency: dict[str, dict[str, dict[int, float]]], path: Path, title: str) -> None:
    """Median seconds per forward pass against batch size, one panel per model, one line per variant."""
    fig, axes = plt.subplots(1, len(latency), figsize=(5 * len(latency), 3.8), squeeze=False)
    for ax, (name, variants) in zip(axes[0], latency.items(), strict=True):
        for variant, by_batch in variants.items():
            sizes = sorted(by_batch)
            ax.plot(sizes, [by_batch[b] * 1e3 for b in sizes], marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("median ms per forward pass")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], path: Path) -> None:
    """Final test accuracy against t0 for each schedule shape, baselines as horizontal lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, color in (("linear", "tab:blue"), ("cosine", "tab:orange")):
        points = sorted((r["t0"], r["test_accuracy"]) for r in rows if r["schedule"] == kind or r["t0"] == 0.0)
        t0s = sorted({t for t, _ in points})
        means = [sum(a for t, a in points if t == t0) / sum(1 for t, _ in points if t == t0) for t0 in t0s]
        ax.scatter([t for t, _ in points], [a for _, a in points], color=color, alpha=0.4, s=14)
        ax.plot(t0s, means, marker="o", color=color, label=f"{kind} schedule (mean of seeds)")
    standard = [r["test_accuracy"] for r in rows if r["schedule"] == "none"]
    if standard:
        ax.axhline(sum(standard) / len(standard), color="gray", linestyle="--", label="standard skips, never removed")
    ax.set_xlabel("t0 (fraction of the run at which skips reach 0; 0 = plain CNN)")
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_anneal(rows: list[dict[str, float]], before: float, path: Path, title: str) -> None:
    """Validation accuracy and skip weight over an annealing fine-tune, the source's accuracy as a line.

    ``rows`` are the loop's per-epoch rows; epoch 0 is the source, at skip weight 1 and accuracy ``before``.
    """
    epochs = [0.0] + [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [before] + [r["test_accuracy"] for r in rows], marker="o", color="tab:green", label="annealed")
    ax.axhline(before, color="gray", linestyle="--", label="source (standard skips)")
    ax.set_xlabel("epoch of fine-tuning")
    ax.set_ylabel("validation accuracy")
    right = ax.twinx()
    right.plot(epochs, [1.0] + [r["skip_weight"] for r in rows], marker=".", color="tab:red", label="skip weight")
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel("skip weight (end of epoch)")
    lines, more = ax.get_legend_handles_labels(), right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
