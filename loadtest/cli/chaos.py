"""``soak-faults``: the soak with faults of :mod:`loadtest.scenarios.chaos` (``make soak``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from loadtest.chaos_report import markdown, plot_all
from loadtest.cli.common import facts, out_dir
from loadtest.report import write_report
from loadtest.scenarios.chaos import run_chaos

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """Register ``soak-faults``."""
    soak = sub.add_parser(
        "soak-faults", help="two workers under open-loop load with reloads, worker kills and bad uploads on a schedule"
    )
    soak.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default %(default)s)")
    soak.add_argument("--out", type=Path, help="report folder (default loadtest/results/soak-faults-TIME)")
    soak.add_argument("--store", type=Path, default=Path("model_store"), help="copied, never changed")
    soak.add_argument("--model", default="resnet18-mnist", help="the model reloaded (default %(default)s)")
    soak.add_argument(
        "--no-imported", dest="imported", action="store_false", help="leave the imported ResNet-18 out of the store"
    )
    soak.add_argument("--rate", type=float, help="requests/s offered (default: 70%% of the measured capacity)")
    soak.add_argument("--quiet", type=float, help="seconds without faults at the start (default: a tenth, 10-120)")
    soak.set_defaults(func=_soak_faults)


def _soak_faults(args: argparse.Namespace) -> int:
    out, before = out_dir(args, "soak-faults"), os.getloadavg()
    run = run_chaos(
        out,
        duration=args.duration,
        model_store=args.store,
        model=args.model,
        imported=args.imported,
        rate=args.rate,
        quiet=args.quiet,
    )
    report = {**facts(args, before), **run}
    report["plots"] = plot_all(report, out)
    path = write_report(out, "soak-faults", report, markdown)
    print(f"{path.read_text()}\nreport: {path}")
    return 0 if run["analysis"]["passed"] else 1
