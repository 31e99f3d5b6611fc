"""The graph cache: exported ONNX graphs, and the runtime chosen for each, kept between starts, outside the
(read-only) model store.

An entry is ``KEY.onnx`` with ``KEY.json`` beside it (the graph's sha256 and what the key was made of). The key
covers everything the graph's bytes depend on: the weights' sha256, the variant, its simplification, the input
shape and the exporter's version. Files are written to a temporary name and renamed, so a reader sees a whole
entry or none. What is read back is checked against its sha256 and by :func:`~app.runtimes.onnx_graph.check_graph`
here, then verified against the float64 reference like a fresh export before anything serves it; an entry that
fails any of these is deleted and exported again. A cache that cannot be written (read-only, full disk) costs
only the export at the next start: it is logged, never fatal.

Beside a graph, ``KEY.choice.json`` records which runtime the timing at load chose for it, with the context it was
timed in (candidates, threads, device, batch cap, machine, runtime versions): a later load of the same graph in
the same context (a restarted or added worker, a reload of the same weights) builds and verifies only the runtime
chosen, as a timing cache does for TensorRT's builder. A record from another context is ignored and replaced; one
that cannot be read is deleted. It is plain JSON, checked field by field before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from app.runtimes.base import RuntimeUnavailable
from app.runtimes.onnx_graph import GraphRefused, check_graph, exporter_version

__all__ = ["GraphCache", "cache_key", "graph_key"]

logger = logging.getLogger(__name__)


def cache_key(*, weights_sha256: str, variant: str, kind: str, input_shape: tuple[int, ...], exporter: str) -> str:
    """The file stem of one graph: readable in front, a digest of every part behind."""
    parts = {"weights": weights_sha256, "variant": variant, "kind": kind, "input": list(input_shape)}
    parts["exporter"] = exporter
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{weights_sha256[:12]}-{variant}-{digest[:16]}"


def graph_key(*, weights_sha256: str, variant: str, kind: str, input_shape: tuple[int, ...]) -> str | None:
    """:func:`cache_key` with this process's exporter; None where the exporter is not installed.

    ``kind`` is the model's simplification (its report's ``kind``); only the collapsed variant's graph depends on it.
    """
    try:
        exporter = exporter_version()
    except RuntimeUnavailable:
        return None
    kind = kind if variant == "collapsed" else "original"
    return cache_key(
        weights_sha256=weights_sha256, variant=variant, kind=kind, input_shape=input_shape, exporter=exporter
    )


class GraphCache:
    """Graphs under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, key: str) -> bytes | None:
        """The graph stored under ``key`` if it is whole and passes :func:`check_graph`; else None (and a damaged
        entry is deleted, with a warning saying why)."""
        graph_path, meta_path = self._paths(key)
        if not graph_path.is_file():
            return None
        try:
            graph = graph_path.read_bytes()
            expected = json.loads(meta_path.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._refuse(key, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        actual = hashlib.sha256(graph).hexdigest()
        if actual != expected:
            self._refuse(key, f"sha256 {actual[:12]}… does not match the recorded {str(expected)[:12]}…")
            return None
        try:
            check_graph(graph)
        except GraphRefused as exc:
            self._refuse(key, str(exc))
            return None
        return graph

    def write(self, key: str, graph: bytes, **about: object) -> None:
        """Store ``graph`` under ``key``, atomically; a failure is logged and otherwise ignored."""
        graph_path, meta_path = self._paths(key)
        meta = json.dumps({"sha256": hashlib.sha256(graph).hexdigest(), **about}, indent=1, default=str)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_atomically(graph_path, graph)
            _write_atomically(meta_path, meta.encode())
        except OSError as exc:
            logger.warning("runtime cache %s not written (%s); the graph is exported again next start", graph_path, exc)
            self.evict(key)

    def evict(self, key: str) -> None:
        """Delete the entry ``key``, if any."""
        for path in self._paths(key):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def read_choice(self, key: str, context: dict[str, Any]) -> dict[str, Any] | None:
        """The runtime choice recorded for ``key`` if it was made in ``context``; else None (and a record that
        cannot be read is deleted, with a warning)."""
        path = self._choice_path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            recorded_context, choice = record["context"], record["choice"]
            if not isinstance(choice, dict):
                raise TypeError(f"the choice is a {type(choice).__name__}, not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "runtime choice %s refused: unreadable (%s: %s); timing again", path, type(exc).__name__, exc
            )
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None
        return choice if recorded_context == context else None

    def write_choice(self, key: str, context: dict[str, Any], choice: dict[str, Any]) -> None:
        """Record ``choice`` for ``key``, made in ``context``, atomically; a failure is logged and otherwise ignored."""
        path = self._choice_path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, json.dumps({"context": context, "choice": choice}, indent=1).encode())
        except OSError as exc:
            logger.warning("runtime choice %s not written (%s); the candidates are timed again next start", path, exc)

    def _choice_path(self, key: str) -> Path:
        return self.root / f"{key}.choice.json"

    def _refuse(self, key: str, why: str) -> None:
        logger.warning("runtime cache entry %s refused: %s; exporting again", self._paths(key)[0], why)
        self.evict(key)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.onnx", self.root / f"{key}.json"


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
