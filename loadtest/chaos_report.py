"""The soak-with-faults report: lost-request accounting, PSS slopes, latency under faults, the aims, markdown and
plots."""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from loadtest.stats import percentile

__all__ = ["analyse", "markdown", "plot_all", "slope_per_10min"]

OK = ("200", "OK")
SERVER_ERRORS = ("INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "CANCELLED")
"""gRPC codes counted as the server failing a request, as a 5xx is over HTTP."""
MAX_SLOPE_MIB_PER_10MIN = 1.0
MAX_P99_RATIO = 3.0  # requests started in the 10 s after a fault, against the quiet p99
BACK_P99_RATIO = 1.5  # requests started 10 to 20 s after a fault: back to quiet
WINDOW_S = 10.0
FLOOR_S = 60.0
"""PSS is fitted on each minute's lowest sample: a reload a minute builds runtimes beside the served ones (up to
200 MiB for seconds, then given back), and samples that fall in those transients move an every-sample fit by more
than the aim; what a worker keeps shows in the floor between them."""
MIB = 2**20


def slope_per_10min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, bytes)`` points in MiB per 10 minutes; None under 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mt, mb = sum(t for t, _ in points) / n, sum(b for _, b in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (b - mb) for t, b in points) / var * 600.0 / MIB


def _lost_kind(r: dict[str, Any]) -> str | None:
    if r["status"].startswith("no answer"):
        return "no answer"
    if r["status"].startswith("5") or r["status"] in SERVER_ERRORS:
        return "server error"
    if r["status"] not in OK:  # every request of the load is well formed: a 4xx or another gRPC code refused it
        return "refused"
    return "wrong answer" if r["wrong"] else None


def _p99(records: list[dict[str, Any]]) -> float | None:
    latencies = [r["latency"] for r in records if r["status"] in OK]
    return percentile(latencies, 99) if latencies else None


def floors(points: list[tuple[float, float]], width: float = FLOOR_S) -> list[tuple[float, float]]:
    """The lowest ``(seconds, bytes)`` point of each ``width``-second bin."""
    bins: dict[int, tuple[float, float]] = {}
    for t, b in points:
        k = int(t // width)
        if k not in bins or b < bins[k][1]:
            bins[k] = (t, b)
    return [bins[k] for k in sorted(bins)]


def _memory(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    pids = sorted({s["pid"] for s in samples})
    out = {}
    for pid in pids:
        mine = [s for s in samples if s["pid"] == pid]
        born = mine[0]["t"]  # a worker started in the run warms up from its own start
        kept = [s for s in mine if s["t"] >= warmup and s["t"] >= born + (warmup if born > 0 else 0)]
        pss = [(s["t"], s["pss_bytes"]) for s in kept]
        uss = [(s["t"], s["uss_bytes"]) for s in kept if s.get("uss_bytes") is not None]
        lowest = floors(pss)
        out[str(pid)] = {
            "samples": len(mine),
            "fitted": len(kept),
            "slope_mib_per_10min": slope_per_10min(pss),
            "floor_slope_mib_per_10min": slope_per_10min(lowest),
            "uss_floor_slope_mib_per_10min": slope_per_10min(floors(uss)),
            "floor_first_mib": min(b for _, b in lowest[:5]) / MIB if lowest else None,
            "floor_last_mib": min(b for _, b in lowest[-5:]) / MIB if lowest else None,
        }
    return out


def _fault_windows(run: dict[str, Any], quiet_p99: float | None) -> dict[str, dict[str, Any]]:
    """Per kind of fault: the worst p99 of requests started in the ``WINDOW_S`` after one (during) and in the
    ``WINDOW_S`` after that (after), as ratios of the quiet p99."""
    records = sorted(run["records"], key=lambda r: r["start"])
    starts = [r["start"] for r in records]
    events = [("kill", k["t"]) for k in run["kills"]] + [("reload", r["t"]) for r in run["reloads"]]
    events += [("burst", b["t"]) for b in run["bursts"]]
    out: dict[str, dict[str, Any]] = {}
    for kind, t in events:
        entry = out.setdefault(kind, {"count": 0, "during": [], "after": []})
        entry["count"] += 1
        for name, begin in (("during", t), ("after", t + WINDOW_S)):
            window = records[bisect_left(starts, begin) : bisect_left(starts, begin + WINDOW_S)]
            p99 = _p99(window)
            if p99 is not None and quiet_p99:
                entry[name].append(p99 / quiet_p99)
    for entry in out.values():
        for name in ("during", "after"):
            ratios = entry.pop(name)
            entry[f"worst_{name}"] = max(ratios) if ratios else None
            entry[f"median_{name}"] = percentile(ratios, 50) if ratios else None
    return out


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """Accounting and aims from a run's ``records``, ``kills``, ``reloads``, ``bursts``, ``memory``, ``quiet_s`` and
    ``tracebacks``."""
    records, quiet = run["records"], run["quiet_s"]
    lost = [{**r, "kind": k} for r in records if (k := _lost_kind(r))]
    excused = [r for r in lost if r["in_flight_at_kill"] and r["kind"] != "wrong answer"]
    counted = [r for r in lost if r not in excused]
    quiet_p99 = _p99([r for r in records if r["start"] < quiet])
    fault_p99 = _p99([r for r in records if r["start"] >= quiet])
    windows = _fault_windows(run, quiet_p99)
    during = [w["worst_during"] for w in windows.values() if w["worst_during"] is not None]
    after = [w["worst_after"] for w in windows.values() if w["worst_after"] is not None]
    memory = _memory(run["memory"], run["memory_warmup_s"])
    slopes = [m["floor_slope_mib_per_10min"] for m in memory.values() if m["floor_slope_mib_per_10min"] is not None]
    wrong = sum(r["kind"] == "wrong answer" for r in lost)
    tracebacks = run.get("tracebacks")
    aims = {
        "no requests lost beyond those in flight at kills": {"value": len(counted), "passed": not counted},
        "no wrong answers": {"value": wrong, "passed": wrong == 0},
        "no tracebacks in the server's log": {
            "value": tracebacks,
            "passed": tracebacks == 0 if tracebacks is not None else None,
        },
        f"PSS slope < {MAX_SLOPE_MIB_PER_10MIN} MiB per 10 min (worst worker, each minute's lowest sample)": {
            "value": max(slopes) if slopes else None,
            "passed": max(slopes) < MAX_SLOPE_MIB_PER_10MIN if slopes else None,
        },
        f"p99 in the {WINDOW_S:g} s after a fault <= {MAX_P99_RATIO}x quiet p99 (worst fault)": {
            "value": max(during) if during else None,
            "passed": max(during) <= MAX_P99_RATIO if during else None,
        },
        f"p99 {WINDOW_S:g} to {2 * WINDOW_S:g} s after a fault <= {BACK_P99_RATIO}x quiet p99 (worst fault)": {
            "value": max(after) if after else None,
            "passed": max(after) <= BACK_P99_RATIO if after else None,
        },
    }
    return {
        "requests": len(records),
        "answered_ok": sum(r["status"] in OK for r in records),
        "lost": counted,
        "in_flight_at_kills": excused,
        "quiet_p99_s": quiet_p99,
        "fault_p99_s": fault_p99,
        "fault_windows": windows,
        "memory": memory,
        "aims": aims,
        "passed": all(a["passed"] is not False for a in aims.values()),
    }


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """The report's markdown."""
    a, lines = report["analysis"], []
    lines += [f"# loadtest: soak with faults ({'PASS' if a['passed'] else 'FAIL'})", ""]
    models = ", ".join(f"`{m}`" for m in report.get("models", [report["model"]]))
    lines += [f"- command: `{report['command']}`", f"- models {models}; reloads rewrite `{report['model']}`"]
    lines += [f"- 2 workers, {report['setup']}"]
    lines += [f"- capacity (closed loop, 8 callers) {_fmt(report['capacity_rps'])}/s; offered {_fmt(report['rate'])}/s"]
    lines += [f"- {a['requests']} requests, {a['answered_ok']} answered OK; no faults for {report['quiet_s']:.0f} s"]
    lines += [f"- p99 quiet {_fmt(a['quiet_p99_s'])} s, after the quiet start {_fmt(a['fault_p99_s'])} s"]
    for model, series in report.get("series_per_model", {}).items():
        left = report.get("left_out_digits", {}).get(model)
        lines += [f"- `{model}`: {', '.join(series)}" + (f"; digits {left} left out (near ties)" if left else "")]
    lines += ["", "## Aims", ""]
    for name, aim in a["aims"].items():
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[aim["passed"]]
        lines.append(f"- {verdict}: {name} (value {_fmt(aim['value'])})")
    lines += ["", "## p99 after faults, as a ratio of the quiet p99", ""]
    lines += [
        "| fault | count | worst 0-10 s | median 0-10 s | worst 10-20 s | median 10-20 s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, w in a.get("fault_windows", {}).items():
        cells = [_fmt(w[f"{m}_{n}"]) for n in ("during", "after") for m in ("worst", "median")]
        lines.append(f"| {kind} | {w['count']} | " + " | ".join(cells) + " |")
    prom = report.get("prometheus", {})
    lines += ["", "## Prometheus", "", f"- {_prometheus_line(prom)}"]
    lines += ["", f"## Worker kills ({len(report['kills'])}), restarts seen: {report['restarts']}", ""]
    lines += [
        f"- t={k['t']:.1f} s: pid {k['pid']} (dead after {k.get('dead_after_s', 0) * 1e3:.0f} ms), "
        f"{k['in_flight']} requests in flight, {_failed_at(a, k)} of them failed; the replacement served every "
        f"model after {_fmt(k.get('replacement_serving_after_s'))} s"
        for k in report["kills"]
    ]
    lines += ["", f"## Reloads ({len(report['reloads'])})", ""]
    for r in report["reloads"]:
        lines.append(
            f"- t={r['t']:.1f} s: {r['kind']} version {r['version']} -> served {r.get('served_version')} "
            f"{r.get('state')} ({r.get('outcome')}) {r.get('reason', '')[:120]}"
        )
    lines += [
        "",
        "## Bursts",
        "",
        *(
            f"- t={b['t']:.1f} s: slow uploads {b['slow_upload_statuses']}, oversized {b['oversized_statuses']}"
            for b in report["bursts"]
        ),
    ]
    lines += ["", "## Memory per worker (slopes in MiB per 10 min, least squares after warm-up)", ""]
    lines += [
        "| pid | samples fitted | PSS, each minute's lowest | PSS, every sample | USS, each minute's lowest | "
        "lowest PSS, first 5 min -> last 5 min (MiB) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {pid} | {m['fitted']} of {m['samples']} | {_fmt(m['floor_slope_mib_per_10min'])} | "
        f"{_fmt(m['slope_mib_per_10min'])} | {_fmt(m['uss_floor_slope_mib_per_10min'])} | "
        f"{_fmt(m['floor_first_mib'])} -> {_fmt(m['floor_last_mib'])} |"
        for pid, m in a["memory"].items()
    ]
    lines += ["", f"## Lost requests ({len(a['lost'])}; {len(a['in_flight_at_kills'])} more were in flight at kills)"]
    lines += [
        "",
        *(
            f"- t={r['start']:.2f} s {r['series']} {r.get('model', '')} digit {r['digit']}: {r['kind']}, "
            f"{r['status']}, label {r['label']}"
            for r in a["lost"]
        ),
    ]
    lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in report.get("plots", []))]
    return "\n".join(lines) + "\n"


def _prometheus_line(prom: dict[str, Any]) -> str:
    if "error" in prom or not prom:
        return f"not measured: {prom.get('error', 'not run')}"
    statuses = ", ".join(f"{k}: {v:.0f}" for k, v in sorted(prom.get("requests_by_status", {}).items()))
    return (
        f"{_fmt(prom.get('scrapes_up'))} of {_fmt(prom.get('scrapes'))} scrapes of foldserve succeeded (every 5 s, "
        f"deploy/prometheus/prometheus.yml); foldserve_requests_total by status at the end: {statuses}"
    )


def _failed_at(analysis: dict[str, Any], kill: dict[str, Any]) -> int:
    end = kill["t"] + kill.get("dead_after_s", 0.0)
    return sum(
        1 for r in analysis["in_flight_at_kills"] if r["start"] <= end and r["start"] + r["latency"] >= kill["t"]
    )


def _bins(records: list[dict[str, Any]], width: float) -> dict[int, list[dict[str, Any]]]:
    bins: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        bins.setdefault(int(r["start"] // width), []).append(r)
    return dict(sorted(bins.items()))


def _marks(ax: Any, report: dict[str, Any]) -> None:
    for k in report["kills"]:
        ax.axvline(k["t"], color="red", alpha=0.5, lw=0.8)
    for r in report["reloads"]:
        ax.axvline(r["t"], color="green" if r["kind"] == "good" else "orange", alpha=0.4, lw=0.6, ls="--")


def plot_all(report: dict[str, Any], directory: Path) -> list[str]:
    """``statuses.png``, ``latency.png`` and ``pss.png``; their names. Kills red, reloads green/orange dashed."""
    records, width = report["records"], max(1.0, report["duration_s"] / 120)
    bins = _bins(records, width)
    fig, ax = plt.subplots(figsize=(10, 4))
    for status in sorted({r["status"] for r in records}):
        ax.plot(
            [b * width for b in bins],
            [sum(r["status"] == status for r in rs) / width for rs in bins.values()],
            label=status,
        )
    _marks(ax, report)
    ax.set(xlabel="s", ylabel="answers/s", title="answers by status")
    ax.legend(fontsize=7)
    _save(fig, directory / "statuses.png")
    fig, ax = plt.subplots(figsize=(10, 4))
    for series in sorted({r["series"] for r in records}):
        for q, style in ((50, "-"), (99, ":")):
            xs, ys = [], []
            for b, rs in bins.items():
                ok = [r["latency"] * 1e3 for r in rs if r["series"] == series and r["status"] in OK]
                if ok:
                    xs.append(b * width)
                    ys.append(percentile(ok, q))
            ax.plot(xs, ys, style, label=f"{series} p{q}")
    _marks(ax, report)
    ax.set(xlabel="s", ylabel="ms", yscale="log", title="p50 (solid) and p99 (dotted) per series")
    ax.legend(fontsize=6, ncol=2)
    _save(fig, directory / "latency.png")
    fig, ax = plt.subplots(figsize=(10, 4))
    for pid in sorted({s["pid"] for s in report["memory"]}):
        mine = [s for s in report["memory"] if s["pid"] == pid]
        ax.plot([s["t"] for s in mine], [s["pss_bytes"] / MIB for s in mine], label=f"pid {pid}")
    _marks(ax, report)
    ax.set(xlabel="s", ylabel="PSS (MiB)", title="PSS per worker")
    ax.legend(fontsize=7)
    _save(fig, directory / "pss.png")
    return ["statuses.png", "latency.png", "pss.png"]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
