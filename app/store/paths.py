"""Where a checkpoint's files may lie, and how messages name them.

A model store is trusted as a whole, not path by path: every file a checkpoint is read from (its folder, the
manifest, the weights, the samples) must lie inside the store once every symlink is followed, unless the
operator allows links out of it. A link that stays inside the store (two names for one model, weights shared
between folders) is fine. Messages name files relative to the store, because they reach clients.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.store.errors import CheckpointError

__all__ = ["ModelStore"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStore:
    """The folder that checkpoints are read from.

    Attributes:
        root: the store; paths in messages are relative to it.
        allow_links_out: follow symlinks to paths outside ``root`` (``FOLDSERVE_ALLOW_SYMLINKS_OUT_OF_STORE``).
    """

    root: Path
    allow_links_out: bool = False

    @classmethod
    def around(cls, directory: Path) -> ModelStore:
        """The store of a folder read on its own (a command line tool): its parent, links followed anywhere."""
        return cls(Path(directory).parent, allow_links_out=True)

    def name(self, path: Path) -> str:
        """``path`` relative to the store, as messages show it; its bare name when it is not under the store."""
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return Path(path).name

    def resolve(self, path: Path) -> Path:
        """The real path of ``path``, every symlink followed.

        Raises:
            CheckpointError: when it lies outside the store and links out of the store are not allowed.
        """
        real = Path(path).resolve()
        if self.allow_links_out or real.is_relative_to(self.root.resolve()):
            return real
        logger.warning("%s resolves to %s, outside the model store %s", path, real, self.root.resolve())
        raise CheckpointError(
            self.name(path),
            "a symlink leads outside the model store; refused (set FOLDSERVE_ALLOW_SYMLINKS_OUT_OF_STORE=true "
            "to serve files linked from elsewhere)",
        )

    def scrub(self, text: str) -> str:
        """``text`` (an error from a library) with the store's absolute location taken out of every path."""
        for prefix in {os.path.abspath(self.root), str(self.root.resolve())}:
            text = text.replace(prefix + os.sep, "")
        return text
