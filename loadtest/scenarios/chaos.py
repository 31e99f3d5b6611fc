"""Soak with faults (``python -m loadtest soak-faults``): two workers on a temporary copy of the store, an open-loop
mixed load at a fraction of the measured capacity, and on a schedule reloads (good and corrupt), worker kills and
bursts of slow uploads and oversized images; every request recorded and checked.

The temporary store holds one model of the shipped store (``resnet18-mnist`` by default), so capacity and reloads
concern one model; the imported ResNet-18 is left out (setting it up costs minutes).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.chaos_report import analyse
from loadtest.scenarios.chaos_client import Client, load_digits
from loadtest.scenarios.chaos_faults import Faults, fault_times
from loadtest.server import ServerProcess, free_port, wait_until_all_ready

__all__ = ["run_chaos"]

POLL_S = 1.0  # FOLDSERVE_MODEL_POLL_S: a rewrite of the store is seen within a second
ADMIN_TOKEN = "soak-faults"


def _server(store: Path, grpc_port: int, log: Path) -> ServerProcess:
    env = {
        "FOLDSERVE_WORKERS": "2",
        "FOLDSERVE_ADMIN_TOKEN": ADMIN_TOKEN,
        "FOLDSERVE_MODEL_CONTROL": "poll",
        "FOLDSERVE_MODEL_POLL_S": str(POLL_S),
        "FOLDSERVE_GRPC_PORT": str(grpc_port),
    }
    return ServerProcess(store, env=env, ready_timeout=300, log_path=log)


async def _drive(server: ServerProcess, grpc_port: int, folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    client = Client(server.base_url, f"127.0.0.1:{grpc_port}", folder.name, load_digits(options["examples"], manifest))
    try:
        expected = await client.learn_expected()
        capacity = await client.capacity(options["capacity_s"]) if options["rate"] is None else None
        rate = options["rate"] or options["fraction"] * (capacity or 0.0)
        duration, quiet = options["duration"], options["quiet"]
        client.origin = time.perf_counter()
        assert server.pid is not None
        faults = Faults(client, server.pid, folder, client.origin, POLL_S)
        await asyncio.gather(
            client.pace(rate, duration),
            faults.run(fault_times(duration, quiet)),
            faults.sample_memory(options["memory_every"], duration),
        )
    finally:
        await client.close()
    pids = {s["pid"] for s in faults.memory}
    first = {s["pid"] for s in faults.memory if s["t"] == faults.memory[0]["t"]} if faults.memory else set()
    return {
        "capacity_rps": capacity,
        "rate": rate,
        "expected_labels": expected,
        "records": [r.to_dict() for r in client.records],
        "kills": faults.kills,
        "reloads": faults.reloads,
        "bursts": faults.bursts,
        "memory": faults.memory,
        "restarts": len(pids - first),
    }


def run_chaos(
    out: Path,
    *,
    duration: float,
    model_store: Path = Path("model_store"),
    model: str = "resnet18-mnist",
    examples: Path = Path("examples"),
    rate: float | None = None,
    fraction: float = 0.7,
    quiet: float | None = None,
    memory_every: float = 5.0,
) -> dict[str, Any]:
    """Run the soak for ``duration`` seconds and return its report (records, faults, memory, analysis).

    Args:
        rate: requests per second offered; None: ``fraction`` of the capacity measured first (closed loop, 5 s).
        quiet: seconds at the start without faults (the quiet p99); default a tenth of the run, 10 to 120 s.
        memory_every: seconds between PSS samples.
    """
    quiet = min(120.0, max(10.0, duration / 10)) if quiet is None else quiet
    options = {"examples": examples, "rate": rate, "fraction": fraction, "duration": duration, "quiet": quiet}
    options |= {"memory_every": memory_every, "capacity_s": 5.0}
    with tempfile.TemporaryDirectory(prefix="foldserve-soak-") as scratch:
        store = Path(scratch) / "model_store"
        shutil.copytree(model_store / model, store / model)
        grpc_port = free_port()
        with _server(store, grpc_port, out / "server.log") as server:
            wait_until_all_ready(server.base_url, 2)
            run = asyncio.run(_drive(server, grpc_port, store / model, options))
    run |= {"model": model, "duration_s": duration, "quiet_s": quiet, "memory_warmup_s": min(300.0, duration / 5)}
    run["setup"] = (
        f"FOLDSERVE_MODEL_CONTROL=poll every {POLL_S:g} s (reloads rewrite the store's folder), "
        f"PSS every {memory_every:g} s, slope fitted after {run['memory_warmup_s']:.0f} s"
    )
    run["analysis"] = analyse(run)
    return run
