"""Soak with faults (``python -m loadtest soak-faults``): two workers on a temporary copy of the store, an open-loop
mixed load at a fraction of the measured capacity, and on a schedule reloads (good and corrupt), worker kills and
bursts of slow uploads and oversized images; a real Prometheus scraping; every request recorded and checked.

The temporary store holds every model of the shipped store and, unless ``imported=False``, torchvision's ResNet-18
(seeded random weights, 1,000 classes, 3 x 224 x 224) brought in by ``python -m app import``. The load goes to
every model in turn; reloads rewrite one of them (``resnet18-mnist`` by default).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.chaos_report import analyse
from loadtest.scenarios.chaos_client import Client, load_digits
from loadtest.scenarios.chaos_faults import Faults, fault_times
from loadtest.scenarios.chaos_prometheus import prometheus
from loadtest.server import ServerProcess, free_port, wait_until_all_ready

__all__ = ["run_chaos"]

POLL_S = 1.0  # FOLDSERVE_MODEL_POLL_S: a rewrite of the store is seen within a second
ADMIN_TOKEN = "soak-faults"
IMPORTED = "resnet18-imagenet"

_RANDOM_RESNET18 = "import sys, torch, torchvision; torch.manual_seed(0); "
_RANDOM_RESNET18 += "torch.save(torchvision.models.resnet18().state_dict(), sys.argv[1])"


def _import_resnet18(store: Path, scratch: Path) -> None:
    """torchvision's ResNet-18 with seeded random weights (none can be downloaded), through ``python -m app import``."""
    weights, labels = scratch / "resnet18.pt", scratch / "labels.txt"
    subprocess.run([sys.executable, "-c", _RANDOM_RESNET18, str(weights)], check=True, timeout=300)
    labels.write_text("\n".join(f"class-{i}" for i in range(1000)) + "\n")
    command = [sys.executable, "-m", "app", "import", "torchvision", "resnet18", str(weights)]
    command += ["--out", str(store / IMPORTED), "--labels", str(labels), "--input", "3x224x224"]
    command += ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
    subprocess.run(command, check=True, timeout=600, capture_output=True)


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
    models = {}
    for model in sorted(p for p in folder.parent.iterdir() if (p / "manifest.json").is_file()):
        models[model.name] = load_digits(options["examples"], json.loads((model / "manifest.json").read_text()))
    client = Client(server.base_url, f"127.0.0.1:{grpc_port}", models)
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
        "models": list(models),
        "series_per_model": {m: client.series_of(m) for m in models},
        "left_out_digits": client.left_out,
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
    imported: bool = True,
    examples: Path = Path("examples"),
    rate: float | None = None,
    fraction: float = 0.7,
    quiet: float | None = None,
    memory_every: float = 5.0,
) -> dict[str, Any]:
    """Run the soak for ``duration`` seconds and return its report (records, faults, memory, analysis).

    Args:
        model: the model reloaded. imported: add the imported ResNet-18 to the store.
        rate: requests per second offered; None: ``fraction`` of the capacity measured first (closed loop, 5 s).
        quiet: seconds at the start without faults (the quiet p99); default a tenth of the run, 10 to 120 s.
        memory_every: seconds between PSS samples.
    """
    quiet = min(120.0, max(10.0, duration / 10)) if quiet is None else quiet
    options = {"examples": examples, "rate": rate, "fraction": fraction, "duration": duration, "quiet": quiet}
    options |= {"memory_every": memory_every, "capacity_s": 5.0}
    with tempfile.TemporaryDirectory(prefix="foldserve-soak-") as scratch:
        store = Path(scratch) / "model_store"
        shutil.copytree(model_store, store)
        if imported:
            _import_resnet18(store, Path(scratch))
        grpc_port = free_port()
        with _server(store, grpc_port, out / "server.log") as server:
            wait_until_all_ready(server.base_url, 2)
            target = server.base_url.removeprefix("http://")
            with prometheus(target, Path(scratch) / "prometheus", out / "prometheus.log") as scraper:
                run = asyncio.run(_drive(server, grpc_port, store / model, options))
                run["prometheus"] = scraper.summary(duration) if scraper else {"error": "no prometheus binary"}
    log = (out / "server.log").read_text(errors="replace")
    run["tracebacks"] = log.count("Traceback (most recent call last)")
    run |= {"model": model, "duration_s": duration, "quiet_s": quiet, "memory_warmup_s": min(300.0, duration / 5)}
    run["setup"] = (
        f"FOLDSERVE_MODEL_CONTROL=poll every {POLL_S:g} s (reloads rewrite the store's folder), "
        f"PSS every {memory_every:g} s, slope fitted after {run['memory_warmup_s']:.0f} s"
    )
    run["analysis"] = analyse(run)
    return run
