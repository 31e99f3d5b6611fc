"""``versus`` and ``memory``: foldserve against the reference, and PSS per worker.

Both start the servers they measure (``--spawn``) on ports of their own and stop them by pid on the way out;
``versus`` can instead target servers already running (``--url``, ``--reference-url``; ``--pid`` and
``--reference-pid`` give the process trees whose CPU time is counted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from loadtest.cli.common import facts, images, int_list, out_dir, server_env
from loadtest.engines import make_engine
from loadtest.report import write_report
from loadtest.scenarios.memory import run_memory
from loadtest.scenarios.versus import CONCURRENCIES, Contender, Grid, run_versus
from loadtest.scenarios.versus_aims import RATIOS, Aim
from loadtest.server import ReferenceProcess, ServerProcess, wait_until_all_ready, wait_until_ready
from loadtest.versus_report import memory_markdown, versus_markdown

__all__ = ["add_parsers", "foldserve_threads"]

DEFAULT_MODEL = "linear-resnet18-mnist"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``versus`` and ``memory``."""
    versus = sub.add_parser(
        "versus", parents=[common], help="foldserve against the reference handler, side by side, with CPU per answer"
    )
    versus.add_argument("--spawn", type=Path, metavar="MODEL_STORE", help="start foldserve and the reference on it")
    versus.add_argument("--url", help="a running foldserve instead of spawning one")
    versus.add_argument("--reference-url", help="a running reference instead of spawning one")
    versus.add_argument("--pid", type=int, help="with --url: the foldserve process whose tree's CPU is counted")
    versus.add_argument("--reference-pid", type=int, help="with --reference-url: the same for the reference")
    versus.add_argument("--workers", type=int_list, help="foldserve worker counts, one spawned server each (e.g. 1,2)")
    versus.add_argument(
        "--runtimes",
        help="FOLDSERVE_RUNTIMES values separated by '/', one spawned server each (e.g. eager/auto); the reference "
        "runs the last",
    )
    versus.add_argument("--reference-threads", type=int, help="the reference's torch threads (default: foldserve's)")
    versus.add_argument("--models", default=DEFAULT_MODEL, help="comma-separated (default %(default)s)")
    versus.add_argument("--concurrency", type=int_list, default=list(CONCURRENCIES), help="comma-separated")
    versus.add_argument("--duration", type=float, default=6.0, help="seconds bound per measured run")
    versus.add_argument("--requests", type=int, default=50_000, help="request bound per measured run")
    versus.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load before each run")
    versus.add_argument("--repeat", type=int, default=2, help="times the whole grid runs (medians over them)")
    versus.add_argument(
        "--aim",
        type=Aim.parse,
        action="append",
        default=[],
        metavar="KEY>=BOUND",
        help=f"check a ratio against a bound (repeatable); KEY one of {', '.join(RATIOS)}",
    )
    versus.set_defaults(func=_versus)

    memory = sub.add_parser(
        "memory", parents=[common], help="foldserve at each worker count in turn: PSS per process and per worker"
    )
    memory.add_argument("--spawn", type=Path, default=Path("model_store"), metavar="MODEL_STORE")
    memory.add_argument("--workers", type=int_list, default=[1, 2], help="comma-separated (default 1,2)")
    memory.add_argument("--models", help="comma-separated models loaded (default: every model)")
    memory.add_argument("--concurrency", type=int, default=8, help="clients of the short load")
    memory.add_argument("--duration", type=float, default=2.0, help="seconds bound per model and variant")
    memory.add_argument("--requests", type=int, default=5000, help="request bound per model and variant")
    memory.set_defaults(func=_memory)


def foldserve_threads(env: Mapping[str, str]) -> int:
    """The torch threads each foldserve worker runs with under ``env`` (and this process's environment)."""
    from app.config import Settings
    from app.serving.app import torch_threads
    from app.serving.loading import resolve_device

    fields = {k.removeprefix("FOLDSERVE_").lower(): v for k, v in env.items() if k.startswith("FOLDSERVE_")}
    settings = Settings(**fields)
    return torch_threads(settings, resolve_device(settings.device))


@contextlib.contextmanager
def _contenders(args: argparse.Namespace, models: list[str], out: Path) -> Iterator[list[Contender]]:
    env = server_env(args)
    counts = args.workers or [int(env.get("FOLDSERVE_WORKERS", "1"))]
    if args.spawn is None and not (args.url and args.reference_url):
        raise ValueError("versus needs --spawn MODEL_STORE, or both --url and --reference-url")
    if args.url and len(counts) > 1:
        raise ValueError("--workers with several counts spawns one server each: leave out --url")
    # (name, kind, settings, the process to spawn or None, else the url and pid of a server already running)
    runtimes = args.runtimes.split("/") if args.runtimes else [env.get("FOLDSERVE_RUNTIMES", "auto")]
    if args.url and len(runtimes) > 1:
        raise ValueError("--runtimes with several values spawns one server each: leave out --url")
    plans: list[tuple[str, str, dict[str, Any], ServerProcess | None, str | None, int | None]] = []
    for n in counts:
        for runtime in runtimes:
            mine = {**env, "FOLDSERVE_WORKERS": str(n), "FOLDSERVE_RUNTIMES": runtime}
            settings = {"workers": n, "torch_threads": foldserve_threads(mine), "env": mine}
            name = f"foldserve w{n}" + (f" {runtime}" if len(runtimes) > 1 else "")
            log = out / f"{name.replace(' ', '-')}.log"
            server = None if args.url else ServerProcess(args.spawn, env=mine, log_path=log, ready_timeout=300.0)
            plans.append((name, "foldserve", settings, server, args.url, args.pid))
    threads = args.reference_threads or foldserve_threads({**env, "FOLDSERVE_WORKERS": "1"})
    ref = (
        None
        if args.reference_url
        else ReferenceProcess(
            args.spawn, threads=threads, runtimes=runtimes[-1], log_path=out / "reference.log", ready_timeout=300.0
        )
    )
    settings = {"workers": 1, "torch_threads": threads, "env": {"FOLDSERVE_RUNTIMES": runtimes[-1]}}
    plans.append(("reference", "reference", settings, ref, args.reference_url, args.reference_pid))
    with contextlib.ExitStack() as stack:
        for process in (plan[3] for plan in plans if plan[3] is not None):  # all load at once
            stack.callback(process.stop)  # each stopped on the way out, whatever happens
            process.start()
        servers = []
        for name, kind, settings, process, url, pid in plans:
            if process is not None:
                process.wait_ready()
                url, pid = process.base_url, process.pid
            assert url is not None
            if kind == "foldserve" and process is not None:
                status = wait_until_all_ready(url, settings["workers"])
                if any(status.get(m) != "ready" for m in models):
                    raise RuntimeError(f"{name}: not every model of {models} is ready: {status}")
            elif kind == "foldserve":
                wait_until_ready(url, models)
            servers.append(Contender(name, kind, url, pid, settings))
        yield servers


def _versus(args: argparse.Namespace) -> int:
    out = out_dir(args, "versus")
    models = args.models.split(",")
    grid = Grid(
        tuple(models),
        tuple(args.concurrency),
        duration=args.duration,
        requests=args.requests,
        warmup=args.warmup,
        repeat=args.repeat,
        timeout=args.timeout,
        aims=tuple(args.aim),
    )
    engine, pngs = make_engine(args.engine), images(args)
    before = os.getloadavg()
    with _contenders(args, models, out) as servers:
        result = run_versus(engine, servers, grid, pngs)
    report = {
        **facts(args, before),
        "grid": {
            **vars(grid),
            "models": list(grid.models),
            "concurrencies": list(grid.concurrencies),
            "aims": [aim.text for aim in grid.aims],
        },
        "servers": [s.to_dict() for s in servers],
        "result": result,
    }
    path = write_report(out, "versus", report, versus_markdown)
    print(f"\n{path.read_text()}\nreport: {path}")
    return 0


def _memory(args: argparse.Namespace) -> int:
    out = out_dir(args, "memory")
    engine, pngs = make_engine(args.engine), images(args)
    before = os.getloadavg()
    models = args.models.split(",") if args.models else None
    result = run_memory(
        args.spawn,
        args.workers,
        engine,
        pngs,
        models=models,
        env=server_env(args),
        concurrency=args.concurrency,
        duration=args.duration,
        requests=args.requests,
        out=out,
    )
    report = {**facts(args, before), "result": result}
    path = write_report(out, "memory", report, memory_markdown)
    print(f"\n{path.read_text()}\nreport: {path}")
    return 0
