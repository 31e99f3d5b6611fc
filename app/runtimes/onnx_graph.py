"""ONNX graphs of verified modules: exported by foldserve itself, checked before any runtime reads them.

A graph is data, but ONNX can point outside itself: an initializer may name an external file to read its
values from, and a node may belong to a custom-operator domain that a runtime resolves through a library.
:func:`check_graph` refuses both, so a graph read back from the cache can neither read a file nor reach code
that foldserve did not write. What a graph computes is then verified against the float64 reference like
every runtime's outputs (:mod:`app.runtimes.select`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from app.runtimes.base import RuntimeUnavailable

__all__ = ["GRAPH_INPUT", "GRAPH_OUTPUT", "GraphRefused", "check_graph", "export_onnx", "exporter_version"]

logger = logging.getLogger(__name__)

GRAPH_INPUT = "input"
GRAPH_OUTPUT = "logits"

_STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


class GraphRefused(ValueError):
    """A graph that foldserve will not hand to a runtime (unreadable, external data, a custom domain)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise RuntimeUnavailable("the onnx package is not installed (pip install 'foldserve[onnx]')") from None
    return onnx


def exporter_version() -> str:
    """What a graph's bytes depend on besides the weights: torch's and onnxscript's versions, and this format.

    Read from the installed packages' metadata: importing the exporter costs about 240 MiB and a second, which a
    start whose graphs are all cached never pays.
    """
    try:
        onnxscript = importlib.metadata.version("onnxscript")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeUnavailable("onnxscript is not installed (pip install 'foldserve[onnx]')") from None
    return f"torch-{torch.__version__}+onnxscript-{onnxscript}+foldserve-graph-1"


@torch.no_grad()
def export_onnx(module: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """``module`` (float32, eval mode) as a serialized ONNX model with a dynamic batch axis.

    Exported with torch's ``torch.export``-based exporter: one input ``input`` ``[batch, C, H, W]``, one output
    ``logits`` ``[batch, K]``, every weight inside the graph.

    Raises:
        RuntimeUnavailable: the exporter's packages are missing.
        GraphRefused: the export failed (the message says why).
    """
    _onnx(), exporter_version()
    first = next(module.parameters(), None)
    example = torch.zeros(2, *input_shape, device=first.device if first is not None else "cpu")
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        # the exporter reports its progress on stdout and its optimiser's passes at INFO: a server's log is not theirs
        with contextlib.redirect_stdout(io.StringIO()), _quiet("onnxscript", "onnx_ir", "torch.onnx"):
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[GRAPH_INPUT],
                output_names=[GRAPH_OUTPUT],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many kinds; each means "this module does not export"
        raise GraphRefused(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    if program is None:
        raise GraphRefused("ONNX export returned no program")
    graph: bytes = program.model_proto.SerializeToString()
    return graph


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The loggers ``names`` at WARNING and above while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def check_graph(graph: bytes) -> None:
    """Refuse a graph that could read a file or reach code: external data, functions or nodes outside the
    standard ONNX domain, or other inputs and outputs than foldserve exports.

    Raises:
        GraphRefused: naming what is wrong.
    """
    onnx = _onnx()
    try:
        proto = onnx.load_model_from_string(graph)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise GraphRefused(f"not a readable ONNX model ({type(exc).__name__})") from None
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise GraphRefused(f"initializers with external data ({', '.join(external[:3])})")
    nodes = [*_nodes(proto.graph), *(node for function in proto.functions for node in function.node)]
    domains = {node.domain for node in nodes} | {function.domain for function in proto.functions}
    domains |= {opset.domain for opset in proto.opset_import}
    foreign = sorted(domains - _STANDARD_DOMAINS)
    if foreign:
        raise GraphRefused(f"operators outside the standard ONNX domain ({', '.join(foreign)})")
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([GRAPH_INPUT], [GRAPH_OUTPUT]):
        raise GraphRefused(f"inputs and outputs {names}, expected [{GRAPH_INPUT!r}] and [{GRAPH_OUTPUT!r}]")


def _nodes(graph: Any) -> list[Any]:
    """Every node of ``graph``, also those of the subgraphs its nodes hold (``If``, ``Loop``, ``Scan`` bodies)."""
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                found.extend(_nodes(sub))
    return found
