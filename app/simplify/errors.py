"""The one error :mod:`app.simplify` raises."""

from __future__ import annotations

from typing import Any

__all__ = ["AffineMapTooLarge", "SimplificationError"]


class SimplificationError(ValueError):
    """A network that cannot be simplified, or whose simplification failed verification.

    Attributes:
        report: what was measured before the failure, when anything was.
    """

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class AffineMapTooLarge(SimplificationError):
    """Collapsing was declined, before any work, because the dense map would exceed the size limit."""
