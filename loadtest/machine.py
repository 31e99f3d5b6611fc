"""What a report says about where it ran: cores, CPU model, load average and the load generator's version."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe_machine", "hey_version"]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The ``model name`` of the first CPU in ``/proc/cpuinfo``, or ``unknown``."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return "unknown"


def hey_version() -> str:
    """hey's Debian package version (hey itself has no ``--version``), or what is known instead."""
    if shutil.which("hey") is None:
        return "not installed"
    if shutil.which("dpkg-query") is None:
        return "unknown (no dpkg-query)"
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown (not a Debian package)"


def describe_machine() -> dict[str, Any]:
    """Cores (all, and usable by this process), CPU model and the 1/5/15-minute load averages now."""
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "loadavg": list(os.getloadavg()),
    }
