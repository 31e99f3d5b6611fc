"""``python -m loadtest COMMAND``: the one command line of every measurement.

Commands, each registered by the module that glues it to its scenario:

- :mod:`loadtest.cli.scenarios`: ``comparison``, ``overload``, ``soak``, ``run`` (one server, ``--url`` or
  ``--spawn``);
- :mod:`loadtest.cli.versus`: ``versus`` (foldserve against the reference, side by side) and ``memory`` (PSS per
  worker count), which start the servers they measure;
- :mod:`loadtest.cli.tools`: ``flood`` (a decode flood), ``grpc`` (a gRPC load) and ``reference`` (the reference
  server itself);
- :mod:`loadtest.cli.chaos`: ``soak-faults`` (two workers under load while reloads, kills and bad uploads hit them).

Every measuring command takes the options of :func:`~loadtest.cli.common.common_options` and writes its report with
:func:`loadtest.report.write_report`.
"""

from __future__ import annotations

import argparse
import sys

from loadtest.cli import chaos, scenarios, tools, versus
from loadtest.cli.common import common_options

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per scenario or tool."""
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    scenarios.add_parsers(sub, common_options())
    versus.add_parsers(sub, common_options(engine="hey"))
    tools.add_parsers(sub, common_options(engine="hey"))
    chaos.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (1 where a scenario's checks fail)."""
    args = build_parser().parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    return int(args.func(args))
