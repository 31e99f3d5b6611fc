"""A server's whole process tree from ``/proc`` (Linux): its pids, CPU time, and memory (RSS, PSS) per process.

With ``FOLDSERVE_WORKERS=N`` the server is a supervisor and N forked workers, so figures for "the server" must
cover the process and every descendant. Children are found through ``/proc/PID/task/*/children`` where the
kernel has it (``CONFIG_PROC_CHILDREN``), else by reading every ``/proc/*/stat`` for its parent pid.

CPU time of a process is ``utime + stime`` (all its threads, live and exited) plus ``cutime + cstime`` (its
children that have exited and been waited for), so a worker that dies and is replaced between two readings
is still counted: its time moves from its own line to its parent's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessMemory", "alive", "children", "cpu_seconds", "process_tree", "tree_cpu_seconds", "tree_memory"]

_PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/PID/stat`` from the state on (field 3): the name in parentheses may hold anything."""
    text = (_PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether any thread of ``pid`` still runs: once every one is a zombie or gone, the kernel has closed the
    process's sockets (the main thread alone turns zombie first, while the others still tear down)."""
    try:
        threads = os.listdir(_PROC / str(pid) / "task")
    except OSError:
        return False
    for thread in threads:
        try:
            stat = (_PROC / str(pid) / "task" / thread / "stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] not in ("Z", "X"):
            return True
    return False


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (an empty list once it has gone)."""
    files = list((_PROC / str(pid) / "task").glob("*/children"))
    if files:
        found: set[int] = set()
        for file in files:
            try:
                found.update(int(p) for p in file.read_text().split())
            except OSError:
                continue
        return sorted(found)
    return sorted(child for child, parent in _parents().items() if parent == pid)


def _parents() -> dict[int, int]:
    parents = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked
    return parents


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant, parents before their children; empty if ``pid`` is gone."""
    if not (_PROC / str(pid)).exists():
        return []
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children(parent)]
        tree += frontier
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU seconds of one process: user + system of its threads and of its waited-for children; 0 if gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))  # stat fields 14 to 17
    return (utime + stime + cutime + cstime) / _TICKS_PER_S


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, as :func:`cpu_seconds` counts them."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


@dataclass(frozen=True)
class ProcessMemory:
    """Memory of one process of a tree, from ``/proc/PID/smaps_rollup`` (bytes; None where unreadable)."""

    pid: int
    role: str  # "server" (one process), "supervisor" (has children) or "worker" (a descendant)
    rss: int | None
    pss: int | None
    uss: int | None = None  # private pages (Private_Clean + Private_Dirty): what no other process shares

    def to_dict(self) -> dict[str, int | str | None]:
        """JSON-ready."""
        return {"pid": self.pid, "role": self.role, "rss_bytes": self.rss, "pss_bytes": self.pss, "uss_bytes": self.uss}


def _rollup(pid: int) -> dict[str, int]:
    try:
        text = (_PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def tree_memory(pid: int) -> list[ProcessMemory]:
    """RSS and PSS of every process of ``pid``'s tree (PSS divides shared pages between their sharers)."""
    tree = process_tree(pid)
    out = []
    for p in tree:
        rollup = _rollup(p)
        role = "worker" if p != pid else ("supervisor" if len(tree) > 1 else "server")
        clean, dirty = rollup.get("Private_Clean"), rollup.get("Private_Dirty")
        uss = clean + dirty if clean is not None and dirty is not None else None
        out.append(ProcessMemory(pid=p, role=role, rss=rollup.get("Rss"), pss=rollup.get("Pss"), uss=uss))
    return out
