"""``flood``, ``grpc`` and ``reference``: a decode flood, a gRPC load, and the reference server foldserve is measured
against."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from loadtest.cli.common import facts, out_dir
from loadtest.reference import serve_reference
from loadtest.report import write_report
from loadtest.scenarios.flood import run_flood
from loadtest.scenarios.grpc import run_grpc
from loadtest.server import ServerProcess, wait_until_all_ready

__all__ = ["add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``flood``, ``grpc`` and ``reference``."""
    flood = sub.add_parser(
        "flood", parents=[common], help="other models' p50 while one model is flooded with large images"
    )
    flood.add_argument("--spawn", type=Path, default=Path("model_store"), metavar="MODEL_STORE")
    flood.add_argument("--url", help="a running foldserve instead of spawning one")
    flood.add_argument("--target", default="annealed-resnet18-mnist", help="the flooded model")
    flood.add_argument("--probes", default="linear-resnet18-mnist,resnet18-mnist", help="comma-separated")
    flood.add_argument("--side", type=int, default=4096, help="side of the flood's square PNGs (two per request)")
    flood.add_argument("--duration", type=float, default=5.0, help="seconds of each probe run")
    flood.add_argument("--repeat", type=int, default=2, help="rounds per probe model (medians over them)")
    flood.set_defaults(func=_flood)

    grpc = sub.add_parser("grpc", help="closed-loop ModelInfer callers on one gRPC channel (grpc.aio)")
    grpc.add_argument("--out", type=Path, help="report folder (default loadtest/results/grpc-TIME)")
    grpc.add_argument("target", help="HOST:PORT of the gRPC service")
    grpc.add_argument("model")
    grpc.add_argument("--concurrency", type=int, default=16)
    grpc.add_argument("--duration", type=float, default=6.0, help="seconds")
    grpc.add_argument("--image", type=Path, help="send this encoded image as the BYTES input 'image'")
    grpc.set_defaults(func=_grpc)

    reference = sub.add_parser("reference", help="serve the minimal reference handler (a yardstick, not a service)")
    reference.add_argument("--store", type=Path, default=Path("model_store"), help="model store (default %(default)s)")
    reference.add_argument("--host", default="127.0.0.1")
    reference.add_argument("--port", type=int, default=8130)
    reference.add_argument("--threads", type=int, help="torch intra-op threads (default: foldserve's, cores - 1)")
    reference.add_argument("--runtimes", default="auto", help="as FOLDSERVE_RUNTIMES (default %(default)s)")
    reference.set_defaults(
        func=lambda args: serve_reference(args.store, args.host, args.port, args.threads, args.runtimes)
    )


def _flood(args: argparse.Namespace) -> int:
    out, before = out_dir(args, "flood"), os.getloadavg()
    probes = args.probes.split(",")
    options = {"repeat": args.repeat, "seconds": args.duration, "side": args.side}
    if args.url:
        results = run_flood(args.url, probes, args.target, **options)
    else:
        with ServerProcess(args.spawn, ready_timeout=300, log_path=out / "server.log") as server:
            wait_until_all_ready(server.base_url, 1)
            results = run_flood(server.base_url, probes, args.target, **options)
    report = {**facts(args, before), "target": args.target, "side": args.side, "results": results}
    path = write_report(out, "flood", report, _flood_markdown)
    print(f"{path.read_text()}\nreport: {path}")
    return 0


def _flood_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# loadtest: flood of {report['target']}",
        "",
        f"- command: `{report['command']}`",
        f"- flood: 16 hey clients, 2 x {report['side']}x{report['side']} PNGs per request",
        "",
        "| probe | p50 alone (ms) | p50 during the flood (ms) | ratio | flood answers |",
        "|---|---|---|---|---|",
    ]
    for probe, r in report["results"].items():
        lines.append(
            f"| {probe} | {r['idle_p50_ms']:.2f} | {r['flood_p50_ms']:.2f} | {r['ratio']:.2f} | {r['flood_statuses']} |"
        )
    return "\n".join(lines) + "\n"


def _grpc(args: argparse.Namespace) -> int:
    out, before = out_dir(args, "grpc"), os.getloadavg()
    image = args.image.read_bytes() if args.image else None
    result = run_grpc(args.target, args.model, concurrency=args.concurrency, duration=args.duration, image=image)
    path = write_report(out, "grpc", {**facts(args, before), "result": result}, _grpc_markdown)
    print(f"{path.read_text()}\nreport: {path}")
    return 0 if result["answers"] else 1


def _grpc_markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    return (
        f"# loadtest: gRPC ModelInfer on {r['model']} ({r['input']})\n\n- command: `{report['command']}`\n"
        f"- {r['concurrency']} callers, {r['seconds']:.1f} s: {r['answers']} answers, errors {r['errors']}, "
        f"{r['answers_per_s']:.0f}/s, p50 {r['p50_s'] * 1e3:.2f} ms, p99 {r['p99_s'] * 1e3:.2f} ms, "
        f"client CPU {r['client_cpu_cores']:.2f} cores\n"
    )
