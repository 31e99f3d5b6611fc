"""Peak memory of a model swap: a server on STORE, then POST .../MODEL/load while its memory is sampled.

Starts `python -m app serve` (one worker) on STORE with an admin token on a free port of 127.0.0.1, waits until
every model is loaded and 5 s more, reads the server's resident size (VmRSS in /proc/PID/status, the median of
3 s of samples) as its steady state, resets its peak (writing 5 to /proc/PID/clear_refs), asks for MODEL to be
loaded again, and reads the peak the kernel kept (VmHWM) when the call returns. Prints the steady state, the peak
and the time the load took; stops the server by its pid. Bounded: 300 s to start, 300 s to load. Linux only.

    .venv/bin/python scripts/swap-memory.py model_store resnet50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtest.server import ServerProcess

TOKEN = "swap-memory"
SETTLE_S = 5.0
"""Seconds between /readyz and the steady-state samples: the last model's load still frees memory just after."""


def status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(f"{field}:"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("model")
    args = parser.parse_args()
    with ServerProcess(args.store, env={"FOLDSERVE_ADMIN_TOKEN": TOKEN}, ready_timeout=300.0) as server:
        pid = server.pid
        assert pid is not None
        time.sleep(SETTLE_S)
        steady = []
        for _ in range(60):
            steady.append(status_bytes(pid, "VmRSS"))
            time.sleep(0.05)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        started = time.monotonic()
        answer = httpx.post(
            f"{server.base_url}/v2/repository/models/{args.model}/load",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=300.0,
        )
        took = time.monotonic() - started
        peak = status_bytes(pid, "VmHWM")
    mib = 2**20
    level = statistics.median(steady)
    print(f"load answered {answer.status_code} in {took:.1f} s")
    print(f"steady RSS {level / mib:.0f} MiB, peak {peak / mib:.0f} MiB: +{(peak - level) / mib:.0f} MiB")
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
