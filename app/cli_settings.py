"""``python -m app settings --markdown``: the settings reference, docs/settings.md, generated from ``Settings``."""

from __future__ import annotations

import argparse
import sys

from app.config import settings_markdown

__all__ = ["add_parsers"]


def _command(args: argparse.Namespace) -> int:
    del args  # --markdown is the only format
    sys.stdout.write(settings_markdown())
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``settings``."""
    p = subparsers.add_parser("settings", help="print every FOLDSERVE_* setting with its default (docs/settings.md)")
    p.add_argument("--markdown", action="store_true", required=True, help="as the markdown table of docs/settings.md")
    p.set_defaults(func=_command)
