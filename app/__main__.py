"""``python -m app``: serve | train | anneal | evaluate | reproduce | import | simplify | bench | runtimes | settings.

Each command lives with its package (``app/<package>/cli.py`` registers it); user errors end as one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Modules whose add_parsers() registers commands; a missing optional one (training without its extra)
# only drops its commands.
_COMMAND_MODULES = (
    "app.serving.cli",
    "app.training.cli",
    "app.importers.cli",
    "app.cli_models",
    "app.cli_runtimes",
    "app.cli_settings",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="foldserve: ResNets simplified by algebra")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (exc.name == name or not exc.name.startswith("app")):
                continue
            raise
        module.add_parsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
