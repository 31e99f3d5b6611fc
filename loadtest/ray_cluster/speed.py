"""The single process, foldserve's replicas and the no-op deployment side by side, measured with hey.

Targets, interleaved so that all see the same machine, at concurrency 1 and 16, ``ROUNDS`` runs each, medians
of the runs: the collapsed ``linear-resnet18-mnist`` on ``examples/digit-7.png`` from the single process and
through the ingress, and the no-op deployment (:mod:`loadtest.ray_cluster.noop`) given the same body.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from loadtest.ray_cluster.cluster import INGRESS, ROOT, SINGLE, log, run

ROUNDS = 2
SECONDS = 5
PATH = "/predict?model=linear-resnet18-mnist"
TARGETS = {"single": SINGLE + PATH, "foldserve": INGRESS + PATH, "noop": INGRESS + "/noop"}


def hey(url: str, concurrency: int, seconds: int = SECONDS) -> dict[str, float]:
    body = str(ROOT / "examples/digit-7.png")
    args = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "image/png", "-D", body, url]
    out = run(args, timeout=seconds + 60)

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        if found is None:
            raise RuntimeError(f"hey's output has no {pattern!r}: {out[-1000:]}")
        return float(found.group(1))

    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    return {
        "answers_per_s": number(r"Requests/sec:\s+([\d.]+)"),
        "mean_ms": number(r"Average:\s+([\d.]+) secs") * 1000,
        "p50_ms": number(r"50% in ([\d.]+) secs") * 1000,
        "p99_ms": number(r"99% in ([\d.]+) secs") * 1000,
        "non_200": float(sum(int(n) for code, n in codes.items() if code != "200")),
    }


def measure(ingress: str) -> dict[str, Any]:
    """Every target at concurrency 1 and 16; the medians, and foldserve's and the no-op's ratios to the single
    process (p50 at concurrency 1, answers/s at 16)."""
    runs: dict[str, list[dict[str, float]]] = {}
    for concurrency in (1, 16):
        for _ in range(ROUNDS):
            for name, url in TARGETS.items():
                runs.setdefault(f"{name} c{concurrency}", []).append(hey(url, concurrency))
    medians = {key: {m: round(statistics.median(r[m] for r in rows), 3) for m in rows[0]} for key, rows in runs.items()}
    for key, row in medians.items():
        log(f"{ingress}: hey {key}: {row}")
    ratios = {
        f"{name}_c1_p50_ratio": round(medians[f"{name} c1"]["p50_ms"] / medians["single c1"]["p50_ms"], 2)
        for name in ("foldserve", "noop")
    } | {
        f"{name}_c16_answers_ratio": round(
            medians[f"{name} c16"]["answers_per_s"] / medians["single c16"]["answers_per_s"], 2
        )
        for name in ("foldserve", "noop")
    }
    log(f"{ingress}: against the single process: {ratios}")
    return {"runs": runs, "medians": medians, "ratios": ratios}
