"""``comparison``, ``overload``, ``soak`` and ``run``: one server (``--url``, or ``--spawn`` here), one report each."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from loadtest.cli.common import facts, images, out_dir, server_env
from loadtest.engines import make_engine
from loadtest.plots import plot_latency_cdf, plot_memory, plot_scaling, plot_timeline
from loadtest.report import markdown, write_report
from loadtest.scenarios import CONCURRENCIES, Context, run_comparison, run_overload, run_single, run_soak
from loadtest.server import ServerProcess, wait_until_all_ready, wait_until_ready
from loadtest.stats import RequestRecord

__all__ = ["DEFAULT_URL", "add_parsers"]

DEFAULT_URL = "http://127.0.0.1:8102"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the scenarios against one server."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--url", default=DEFAULT_URL, help="server under test (default %(default)s)")
    target.add_argument("--spawn", type=Path, metavar="MODEL_STORE", help="start `python -m app serve` on it first")
    target.add_argument("--port", type=int, help="port for --spawn (default: a free one)")
    comparison = sub.add_parser(
        "comparison", parents=[common, target], help="models x variants x concurrency vs /healthz"
    )
    comparison.add_argument("--models", help="comma-separated model names (default: every model in GET /models)")
    comparison.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)), help="comma-separated")
    comparison.add_argument("--requests", type=int, default=2000, help="request bound per run")
    comparison.add_argument("--duration", type=float, default=8.0, help="seconds bound per run")

    overload = sub.add_parser("overload", parents=[common, target], help="open loop at a multiple of capacity")
    overload.add_argument("--model", required=True)
    overload.add_argument("--variant", choices=("collapsed", "original", "both"), default="collapsed")
    overload.add_argument("--factor", type=float, default=4.0, help="offered load / measured capacity")
    overload.add_argument("--duration", type=float, default=10.0, help="seconds of overload")
    overload.add_argument("--deadline", type=float, default=10.0, help="server request deadline (s)")
    overload.add_argument(
        "--concurrency", type=int, default=1024, help="most requests in flight; must exceed the server's queue"
    )

    soak = sub.add_parser("soak", parents=[common, target], help="long open-loop run at a fraction of capacity")
    soak.add_argument("--model", required=True)
    soak.add_argument("--variant", choices=("collapsed", "original", "both"), default="collapsed")
    soak.add_argument("--duration", type=float, default=60.0, help="seconds (600 for the ten-minute soak)")
    soak.add_argument("--fraction", type=float, default=0.5, help="offered load / measured capacity")
    soak.add_argument("--rate", type=float, help="offered requests/s (skips measuring capacity)")
    soak.add_argument("--warmup", type=float, help="seconds before memory counts (default max(10, duration/5))")

    single = sub.add_parser("run", parents=[common, target], help="one run: closed or open loop, one variant or both")
    single.add_argument("--model", required=True)
    single.add_argument("--variant", choices=("collapsed", "original", "both"), default="both")
    single.add_argument("--concurrency", type=int, default=4)
    single.add_argument("--rate", type=float, help="open loop at this many requests/s (default: closed loop)")
    single.add_argument("--requests", type=int, default=1000, help="request bound")
    single.add_argument("--duration", type=float, default=10.0, help="seconds bound")

    for name in ("comparison", "overload", "soak", "run"):
        sub.choices[name].set_defaults(func=_run)


@contextlib.contextmanager
def _server(args: argparse.Namespace, out: Path) -> Iterator[tuple[str, ServerProcess | None]]:
    if args.spawn is None:
        yield args.url, None
        return
    env = server_env(args)
    with ServerProcess(args.spawn, port=args.port, env=env, log_path=out / "server.log") as server:
        wait_until_all_ready(server.base_url, int(env.get("FOLDSERVE_WORKERS", "1")))  # /readyz speaks for one worker
        yield server.base_url, server


def _models(base_url: str) -> list[str]:
    body: Any = httpx.get(f"{base_url}/models", timeout=10.0).raise_for_status().json()
    items = body.get("models", body) if isinstance(body, dict) else body
    return [item["name"] if isinstance(item, dict) else str(item) for item in items]


def _dispatch(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    if args.scenario == "comparison":
        models = args.models.split(",") if args.models else _models(ctx.base_url)
        wait_until_ready(ctx.base_url, models)
        concurrencies = tuple(int(c) for c in args.concurrency.split(","))
        return run_comparison(ctx, models, concurrencies=concurrencies, requests=args.requests, duration=args.duration)
    wait_until_ready(ctx.base_url, [args.model])
    if args.scenario == "overload":
        return run_overload(
            ctx,
            args.model,
            args.variant,
            factor=args.factor,
            duration=args.duration,
            deadline=args.deadline,
            concurrency=args.concurrency,
        )
    if args.scenario == "soak":
        return run_soak(
            ctx,
            args.model,
            args.variant,
            duration=args.duration,
            fraction=args.fraction,
            rate=args.rate,
            warmup=args.warmup,
        )
    return run_single(
        ctx,
        args.model,
        args.variant,
        concurrency=args.concurrency,
        requests=args.requests,
        duration=args.duration,
        rate=args.rate,
    )


def _plots(args: argparse.Namespace, ctx: Context, result: dict[str, Any], out: Path) -> list[str]:
    ms = ctx.measurements
    paths = []
    if args.scenario == "comparison":
        healthz = [m for m in ms if m.model is None]
        for model in result["models"]:
            mine = [m for m in ms if m.model == model]
            paths.append(plot_latency_cdf(mine + healthz, out / f"latency-{model}.png", f"{model}: latency"))
        series = {
            f"{model} {v}": {int(c): r["client"][v] for c, r in by_c.items()}
            for model, rv in result["models"].items()
            for v, by_c in rv.items()
        }
        series["/healthz"] = {int(c): r["client"]["healthz"] for c, r in result["healthz"].items()}
        paths.append(plot_scaling(series, out / "scaling.png", f"throughput and p99 ({args.engine})"))
    else:
        paths.append(plot_latency_cdf(ms, out / "latency.png", f"{args.scenario}: latency ({args.engine})"))
        last = ms[-1]
        records: list[RequestRecord] = last.records
        marks: tuple[float, ...] = ()
        if args.scenario == "overload":
            start, end = result["load_window_s"]
            shifted = [RequestRecord(r.label, r.start + start, r.latency, r.status) for r in last.records]
            records = shifted + [RequestRecord(**p) for p in result["probes"]]
            marks = (start, end)
        paths.append(plot_timeline(records, out / "timeline.png", f"{last.name}: latency over time", marks))
        if args.scenario == "soak" and result["memory_samples"]:
            paths.append(
                plot_memory(result["memory_samples"], out / "memory.png", "server resident memory", result["warmup_s"])
            )
    return [p.name for p in paths]


def _ceiling(ctx: Context) -> str:
    parts = []
    for m in ctx.measurements:
        if m.model is None:
            s = m.summaries()["healthz"]
            parts.append(f"{m.name}: {s['ok_throughput_rps']:.0f}/s, p50 {s['latency_s']['p50'] * 1e3:.2f} ms")
    return "; ".join(parts) or "not measured"


def _run(args: argparse.Namespace) -> int:
    """Run one scenario and write its report; the exit code is 1 when a scenario's checks fail."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out_dir(args, f"{args.scenario}-{args.engine}")
    load_before = os.getloadavg()
    with _server(args, out) as (base_url, server):
        ctx = Context(
            base_url,
            make_engine(args.engine),
            images(args),
            timeout=args.timeout,
            memory_reader=server.resident_memory if server else None,
        )
        result = _dispatch(args, ctx)
    report = {
        **facts(args, load_before),
        "base_url": base_url,
        "started": stamp,
        "engine_ceiling": _ceiling(ctx),
        "result": result,
        "measurements": [m.to_dict() for m in ctx.measurements],
    }
    report["plots"] = _plots(args, ctx, result, out)
    path = write_report(out, "report", report, markdown, ctx.measurements)
    print(f"report: {path}")
    return 1 if result.get("passed") is False else 0
