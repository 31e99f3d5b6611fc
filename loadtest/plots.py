"""PNG plots: latency distribution per variant, throughput and p99 against concurrency, timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from loadtest.measure import Measurement
from loadtest.stats import RequestRecord

__all__ = ["plot_latency_cdf", "plot_memory", "plot_scaling", "plot_timeline"]


def _cdf(ax: Any, latencies: list[float], label: str) -> None:
    if not latencies:
        return
    ordered = sorted(latencies)
    ax.step(
        [v * 1e3 for v in ordered], [(i + 1) / len(ordered) for i in range(len(ordered))], where="post", label=label
    )


def plot_latency_cdf(measurements: list[Measurement], path: Path, title: str) -> Path:
    """Latency distribution (CDF of 200 answers, log scale) of every run and series in ``measurements``."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in measurements:
        for label in dict.fromkeys(r.label for r in m.records):
            ok = [r.latency for r in m.records if r.label == label and r.status == 200]
            _cdf(ax, ok, f"{m.name} [{label}]" if len({r.label for r in m.records}) > 1 else m.name)
    ax.set(xscale="log", xlabel="latency (ms)", ylabel="fraction of requests", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_scaling(series: dict[str, dict[int, dict[str, Any]]], path: Path, title: str) -> Path:
    """Throughput and p99 against concurrency: ``series`` maps a name to {concurrency: client summary}."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, by_c in series.items():
        cs = sorted(by_c)
        left.plot(cs, [by_c[c]["ok_throughput_rps"] for c in cs], marker="o", label=name)
        right.plot(cs, [by_c[c]["latency_s"]["p99"] * 1e3 for c in cs], marker="o", label=name)
    left.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="answers (200) per second", title="throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="p99 latency (ms)", title="p99 latency")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_timeline(records: list[RequestRecord], path: Path, title: str, marks: tuple[float, ...] = ()) -> Path:
    """Latency of every request against its send time, coloured by status; ``marks`` draws vertical lines."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for status in sorted({r.status for r in records}):
        chosen = [r for r in records if r.status == status]
        ax.scatter([r.start for r in chosen], [r.latency * 1e3 for r in chosen], s=3, label=f"status {status}")
    for mark in marks:
        ax.axvline(mark, color="black", linestyle="--", linewidth=0.8)
    ax.set(yscale="log", xlabel="send time (s)", ylabel="latency (ms)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, markerscale=3)
    return _save(fig, path)


def plot_memory(samples: list[tuple[float, float]], path: Path, title: str, warmup: float) -> Path:
    """Server resident memory against time, with the end of warm-up marked."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in samples], [b / 2**20 for _, b in samples], marker=".")
    ax.axvline(warmup, color="black", linestyle="--", linewidth=0.8, label="end of warm-up")
    ax.set(xlabel="time (s)", ylabel="resident memory (MiB)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
