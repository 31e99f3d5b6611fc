"""Reports of the versus and memory scenarios: a JSON file with every figure and a markdown file of tables.

:func:`versus_markdown` and :func:`memory_markdown` give the tables; the command line prints them too.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["memory_markdown", "versus_markdown", "versus_tables"]

_MIB = 2**20
_HEY_STEPS = (
    "- latency is the client's (200s only); hey records it in 0.1 ms steps, so sub-millisecond p50s move in whole "
    "steps (the JSON has each run's mean too)"
)


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value * scale:.{digits}f}"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "not measured"}[met]


def _loadavg(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _header(report: dict[str, Any]) -> list[str]:
    machine = report["machine"]
    return [
        f"- command: `{report['command']}`",
        f"- machine: {machine['cpus']} cores ({machine['usable_cpus']} usable), {machine['cpu_model']}",
        f"- load average (1/5/15 min): before {_loadavg(report['loadavg_before'])}, "
        f"after {_loadavg(report['loadavg_after'])}",
        f"- load generator: {report['engine']} (hey {report['hey_version']}), closed loop",
    ]


def _servers(servers: list[dict[str, Any]]) -> list[str]:
    lines = ["| server | workers | torch threads (each) | settings | pid |", "|---|---:|---:|---|---:|"]
    for s in servers:
        env = ", ".join(f"{k}={v}" for k, v in s.get("env", {}).items()) or "–"
        lines.append(f"| {s['name']} | {s.get('workers', 1)} | {s.get('torch_threads', '–')} | {env} | {s['pid']} |")
    return lines


def versus_tables(result: dict[str, Any]) -> list[str]:
    """The medians table, then per foldserve server and model its ratios and aims (what is printed)."""
    lines = [
        "| model | variant | c | server | answers/s | p50 ms | p99 ms | CPU ms/answer | non-200 |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for m in result["medians"]:
        non_200 = ", ".join(f"{k}: {v}" for k, v in m["non_200"].items()) or "0"
        lines.append(
            f"| {m['model']} | {m['variant']} | {m['concurrency']} | {m['server']} | {_num(m['answers_per_s'], 1, 1)} "
            f"| {_num(m['p50_s'], 1e3)} | {_num(m['p99_s'], 1e3)} | {_num(m['cpu_per_answer_s'], 1e3, 3)} | {non_200} |"
        )
    for server, by_model in result["ratios"].items():
        for model, figures in by_model.items():
            lines += ["", f"{server} against the reference, {model}:", "", "| ratio | value |", "|---|---:|"]
            lines += [f"| {key} | {_shown(key, value)} |" for key, value in figures.items()]
            aims = result["aims"][server][model]
            if aims:
                lines += ["", "| aim | value | verdict |", "|---|---:|---|"]
                lines += [f"| {a['aim']} | {_shown(a['key'], a['value'])} | {_verdict(a['met'])} |" for a in aims]
    return lines


def _shown(key: str, value: float | None) -> str:
    return f"{_num(value, 1e3)} ms" if key.endswith("_s") else f"{_num(value)}x"


def _memory_lines(memory: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    lines = []
    for when, by_server in memory.items():
        for server, processes in by_server.items():
            per = ", ".join(f"{p['role']} {p['pid']} {_num(p['pss_bytes'], 1 / _MIB, 0)}" for p in processes)
            total = sum(p["pss_bytes"] or 0 for p in processes)
            lines.append(f"- {server}, {when.replace('_', ' ')}: PSS {total / _MIB:.0f} MiB ({per} MiB)")
    return lines


def versus_markdown(report: dict[str, Any]) -> str:
    """The versus report as markdown."""
    grid = report["grid"]
    result = report["result"]
    lines = [
        "# loadtest: versus (foldserve against the reference handler)",
        "",
        *_header(report),
        f"- each cell: {grid['warmup']} s warm-up, then at most {grid['duration']} s and {grid['requests']} requests; "
        f"concurrency {', '.join(map(str, grid['concurrencies']))}; medians over {grid['repeat']} repetitions "
        f"(whole grid repeated, servers interleaved within each cell); grid took {result['wall_s']:.0f} s",
        "- answers/s count 200s only; CPU per answer: utime + stime of the server's whole process tree during the "
        "measured run, over its 200s",
        *([_HEY_STEPS] if report["engine"] == "hey" else []),
        "",
        "## Servers",
        "",
        *_servers(report["servers"]),
        "",
        "## Medians, ratios and aims",
        "",
        *versus_tables(result),
        "",
        "## Memory (PSS per process, from /proc/PID/smaps_rollup)",
        "",
        "The servers of one run map the same library files (torch's above all) and PSS divides those pages between",
        "them, so each server shows less here than it would alone: `python -m loadtest memory` measures one at a time.",
        "",
        *_memory_lines(result["memory"]),
    ]
    return "\n".join(lines) + "\n"


def memory_markdown(report: dict[str, Any]) -> str:
    """The memory report as markdown."""
    result = report["result"]
    lines = [
        "# loadtest: memory per worker",
        "",
        *_header(report),
        "",
        "| workers | total PSS after ready (MiB) | total PSS after load (MiB) | PSS per process after load (MiB) "
        "| foldserve_memory_bytes pss (MiB) |",
        "|---:|---:|---:|---|---:|",
    ]
    for run in result["runs"]:
        per = ", ".join(f"{p['role']} {_num(p['pss_bytes'], 1 / _MIB, 0)}" for p in run["after_load"])
        lines.append(
            f"| {run['workers']} | {_num(run['total_pss_after_ready_bytes'], 1 / _MIB, 0)} "
            f"| {_num(run['total_pss_after_load_bytes'], 1 / _MIB, 0)} | {per} "
            f"| {_num(run['foldserve_memory_bytes']['pss'], 1 / _MIB, 0)} |"
        )
    lines.append("")
    for step in result["added_after_load"]:
        lines.append(
            f"- {step['from']} -> {step['to']} workers: +{step['added_bytes'] / _MIB:.0f} MiB PSS, "
            f"{step['per_worker_bytes'] / _MIB:.0f} MiB per extra worker"
        )
    aim = result["second_worker"]
    lines.append(
        f"- aim: the second worker adds at most {aim['bound_bytes'] / _MIB:.0f} MiB of PSS: "
        f"{_num(aim['added_bytes'], 1 / _MIB, 0)} MiB, {_verdict(aim['met'])}"
    )
    return "\n".join(lines) + "\n"
