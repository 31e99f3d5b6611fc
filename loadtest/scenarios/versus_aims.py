"""The versus scenario's arithmetic: medians over repetitions, foldserve's ratios to the reference, and the
aims given on the command line (``--aim``).

Pure functions on plain numbers, so the verdicts can be checked on figures worked out by hand. A cell is one
server at one model, variant and concurrency; its figures per repetition are ``answers_per_s`` (200s only),
``p50_s``, ``p99_s`` (client latency of the 200s) and ``cpu_per_answer_s`` (server process tree CPU / 200s).
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FIGURES", "RATIOS", "Aim", "CellKey", "aims", "medians", "ratios"]

FIGURES: tuple[str, ...] = ("answers_per_s", "p50_s", "p99_s", "cpu_per_answer_s")
"""Per-repetition figures of a cell whose median the report gives."""

RATIOS: tuple[str, ...] = (
    "answers_collapsed_c16_vs_reference",
    "p50_collapsed_c1_vs_reference",
    "p99_collapsed_c1_s",
    "cpu_per_answer_collapsed_c16_vs_reference",
    "collapsed_over_original_c16_foldserve",
    "collapsed_over_original_c16_reference",
    "answers_original_c16_vs_reference",
)
"""The figures :func:`ratios` gives, which an :class:`Aim` may bound."""

CellKey = tuple[str, str, str, int]
"""(server, model, variant, concurrency)."""


def _median(values: Iterable[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else None


def medians(cells: Iterable[Mapping[str, Any]]) -> dict[CellKey, dict[str, Any]]:
    """Median of each of :data:`FIGURES` over the repetitions of every cell; non-200 answers summed.

    Args:
        cells: one mapping per repetition of a cell, with ``server``, ``model``, ``variant``, ``concurrency``,
            the :data:`FIGURES` (None where not measured), ``ok`` and ``non_200`` (``{status: count}``).
    """
    grouped: dict[CellKey, list[Mapping[str, Any]]] = {}
    for cell in cells:
        key = (cell["server"], cell["model"], cell["variant"], int(cell["concurrency"]))
        grouped.setdefault(key, []).append(cell)
    out: dict[CellKey, dict[str, Any]] = {}
    for key, reps in grouped.items():
        non_200: dict[str, int] = {}
        for rep in reps:
            for status, count in rep["non_200"].items():
                non_200[status] = non_200.get(status, 0) + count
        figures = {name: _median(rep.get(name) for rep in reps) for name in FIGURES}
        out[key] = {**figures, "repetitions": len(reps), "ok": sum(rep["ok"] for rep in reps), "non_200": non_200}
    return out


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def ratios(med: Mapping[CellKey, Mapping[str, Any]], foldserve: str, reference: str, model: str) -> dict[str, Any]:
    """The figures the issue's aims use, for one foldserve server against the reference on one model.

    Every value is None where a cell it needs was not measured (concurrency 1 or 16 left out, no CPU figure).
    """

    def get(server: str, variant: str, c: int, figure: str) -> float | None:
        cell = med.get((server, model, variant, c))
        return None if cell is None else cell.get(figure)

    def answers(server: str, variant: str) -> float | None:
        return get(server, variant, 16, "answers_per_s")

    def collapsed_over_original(server: str) -> float | None:
        return _ratio(answers(server, "collapsed"), answers(server, "original"))

    return {
        "answers_collapsed_c16_vs_reference": _ratio(answers(foldserve, "collapsed"), answers(reference, "collapsed")),
        "p50_collapsed_c1_vs_reference": _ratio(
            get(foldserve, "collapsed", 1, "p50_s"), get(reference, "collapsed", 1, "p50_s")
        ),
        "p99_collapsed_c1_s": get(foldserve, "collapsed", 1, "p99_s"),
        "cpu_per_answer_collapsed_c16_vs_reference": _ratio(
            get(foldserve, "collapsed", 16, "cpu_per_answer_s"), get(reference, "collapsed", 16, "cpu_per_answer_s")
        ),
        "collapsed_over_original_c16_foldserve": collapsed_over_original(foldserve),
        "collapsed_over_original_c16_reference": collapsed_over_original(reference),
        "answers_original_c16_vs_reference": _ratio(answers(foldserve, "original"), answers(reference, "original")),
    }


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Aim:
    """A bound a run is checked against, given on the command line: ``ratios[key] OP bound``."""

    key: str  # a key of :func:`ratios`
    op: str  # one of >=, <=, >, <
    bound: float

    @classmethod
    def parse(cls, text: str) -> Aim:
        """``"answers_collapsed_c16_vs_reference>=0.85"`` -> an Aim; a ValueError naming what is wrong."""
        for op in sorted(_COMPARISONS, key=len, reverse=True):
            key, sep, bound = text.partition(op)
            if sep:
                if key.strip() not in RATIOS:
                    raise ValueError(f"aim {text!r}: {key.strip()!r} is not one of {', '.join(RATIOS)}")
                return cls(key.strip(), op, float(bound))
        raise ValueError(f"aim {text!r}: expected KEY>=BOUND, KEY<=BOUND, KEY>BOUND or KEY<BOUND")

    @property
    def text(self) -> str:
        """How the report states it."""
        return f"{self.key} {self.op} {self.bound:g}"


def aims(figures: Mapping[str, float | None], wanted: Iterable[Aim]) -> list[dict[str, Any]]:
    """Each aim with its value and verdict: ``met`` True, False, or None where it was not measured."""
    out = []
    for aim in wanted:
        value = figures.get(aim.key)
        met = None if value is None else bool(_COMPARISONS[aim.op](value, aim.bound))
        out.append({"key": aim.key, "aim": aim.text, "value": value, "bound": aim.bound, "met": met})
    return out
