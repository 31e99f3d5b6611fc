"""Every command's report: ``NAME.json`` (every figure), ``NAME.md`` (the summary) and ``requests.csv``; the
scenarios' markdown (:mod:`loadtest.versus_report` renders versus and memory)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from loadtest.measure import Measurement

__all__ = ["markdown", "measurement_rows", "sanitize", "write_report"]


def sanitize(value: Any) -> Any:
    """``value`` with NaN and infinities as None and every key as text, so it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None or not math.isfinite(seconds) else f"{seconds * 1e3:.2f}"


def _server(m: dict[str, Any], label: str, key: str, q: str) -> float | None:
    side = m["server"].get(label) or {}
    figures = side.get(key) or {}
    return figures.get(q) if figures.get("count") else None


def measurement_rows(measurements: list[dict[str, Any]]) -> list[str]:
    """Markdown table of every run and label: client percentiles beside server-side ones (milliseconds)."""
    rows = [
        "| run | series | requests | ok/s | p50 | p90 | p99 | max | statuses | server decode p50 "
        "| queue p50 / p99 | inference p50 / p99 (per batch) | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for m in measurements:
        for label, s in m["client"].items():
            lat = s["latency_s"]
            statuses = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
            batch = ((m["server"].get(label) or {}).get("batch_size") or {}).get("mean")
            rows.append(
                f"| {m['name']} | {label} | {s['requests']} | {s['ok_throughput_rps'] or 0:.1f} | {_ms(lat['p50'])} "
                f"| {_ms(lat['p90'])} | {_ms(lat['p99'])} | {_ms(lat['max'])} | {statuses} "
                f"| {_ms(_server(m, label, 'decode', 'p50'))} "
                f"| {_ms(_server(m, label, 'queue', 'p50'))} / {_ms(_server(m, label, 'queue', 'p99'))} "
                f"| {_ms(_server(m, label, 'inference', 'p50'))} / {_ms(_server(m, label, 'inference', 'p99'))} "
                f"| {'–' if batch is None or not math.isfinite(batch) else f'{batch:.1f}'} |"
            )
    return rows


def _checks(checks: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| check | result | figures |", "|---|---|---|"]
    for name, check in checks.items():
        verdict = {True: "pass", False: "FAIL", None: "not exercised"}[check.get("passed")]
        figures = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in check.items() if k != "passed"
        )
        lines.append(f"| {name} | {verdict} | {figures} |")
    return lines


def _aims(aims: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for model, aim in aims.items():
        if "throughput_c16" in aim:
            t = aim["throughput_c16"]
            lines.append(
                f"- {model}: collapsed/original answers per second at concurrency 16 = "
                f"{t['collapsed_rps']:.1f}/{t['original_rps']:.1f} = **{t['ratio']:.2f}x** "
                f"(aim >= 3x: {'met' if t['met'] else 'not met'})"
            )
        if "latency_c1" in aim:
            a = aim["latency_c1"]
            lines.append(
                f"- {model}: collapsed p50 at concurrency 1 = {_ms(a['collapsed_p50_s'])} ms against "
                f"1.5 x (/healthz p50 {_ms(a['healthz_p50_s'])} + decode p50 {_ms(a['decode_p50_s'])}) = "
                f"{_ms(a['bound_s'])} ms ({'met' if a['met'] else 'not met'})"
            )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The markdown summary of a report (as :func:`write_report` builds it)."""
    ceiling = report["engine_ceiling"]
    lines = [
        f"# loadtest: {report['scenario']}",
        "",
        f"- server: {report['base_url']}; engine: **{report['engine']}**; started {report['started']}",
        f"- engine ceiling (/healthz through {report['engine']}): {ceiling}",
        f"- machine: {report['machine']}",
        f"- command: `{report['command']}`",
        "",
    ]
    result = report["result"]
    if "aims" in result:
        lines += ["## Aims", "", *_aims(result["aims"]), ""]
    if "checks" in result:
        lines += [f"## Checks ({'passed' if result['passed'] else 'FAILED'})", "", *_checks(result["checks"]), ""]
        for key in ("capacity_rps", "offered_rps", "sent_rps", "normal_latency_s"):
            if result.get(key) is not None:
                lines.append(f"- {key}: {result[key]:.4g}")
        lines.append("")
    lines += ["## Runs (latencies in ms; client-side from the engine, server-side from /metrics deltas)", ""]
    lines += measurement_rows(report["measurements"])
    lines += ["", *(f"- {m['name']}: {'; '.join(m['notes'])}" for m in report["measurements"] if m["notes"])]
    lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in report.get("plots", []))]
    return "\n".join(lines) + "\n"


def write_report(
    directory: Path,
    name: str,
    report: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    measurements: Iterable[Measurement] = (),
) -> Path:
    """Write ``NAME.json`` (strict JSON: NaN as null), ``NAME.md`` (``render`` of it) and, where ``measurements``
    are given, ``requests.csv`` (every request) into ``directory``; returns the markdown's path."""
    directory.mkdir(parents=True, exist_ok=True)
    clean = sanitize(report)
    (directory / f"{name}.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    (directory / f"{name}.md").write_text(render(clean))
    records = [(m.name, r) for m in measurements for r in m.records]
    if records:
        with (directory / "requests.csv").open("w", newline="") as sink:
            writer = csv.writer(sink)
            writer.writerow(["run", "series", "start_s", "latency_s", "status", "retry_after"])
            for run, r in records:
                writer.writerow([run, r.label, f"{r.start:.6f}", f"{r.latency:.6f}", r.status, r.retry_after or ""])
    return directory / f"{name}.md"
