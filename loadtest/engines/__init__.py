"""Load engines: ``httpx`` (async, in process, always available) and ``hey`` (Go, Debian package)."""

from loadtest.engines.base import Engine, LoadSpec, RunResult
from loadtest.engines.hey_engine import HeyEngine, parse_hey_csv
from loadtest.engines.httpx_engine import HttpxEngine

__all__ = ["ENGINES", "Engine", "HeyEngine", "HttpxEngine", "LoadSpec", "RunResult", "make_engine", "parse_hey_csv"]

ENGINES: tuple[str, ...] = ("httpx", "hey")
"""Engine names the command line accepts."""


def make_engine(name: str) -> Engine:
    """The engine called ``name`` (one of :data:`ENGINES`)."""
    if name == "httpx":
        return HttpxEngine()
    if name == "hey":
        return HeyEngine()
    raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
