"""The one error :mod:`app.store` raises."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: the message names the file, relative to the model store, and what is wrong.

    Messages reach clients (a failed model's reason), so they never hold an absolute server path.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem
