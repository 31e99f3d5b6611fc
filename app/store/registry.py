"""Finding the checkpoints in a model store."""

from __future__ import annotations

from pathlib import Path

from app.store.checkpoint import MANIFEST_FILE

__all__ = ["discover_models"]


def discover_models(root: Path | str) -> list[Path]:
    """The sub-folders of ``root`` that hold a manifest, sorted by name.

    A symlinked folder is listed wherever it leads. Loading it with ``store=ModelStore(root)`` refuses one
    whose real path lies outside the store (unless links out are allowed), so the service shows it as a
    failed model with that reason instead of it silently vanishing from the list.

    Raises:
        FileNotFoundError: when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model store {root} is not a folder")
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST_FILE).is_file())
