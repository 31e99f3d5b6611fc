"""The version each model serves, kept outside the model store for a worker that starts later.

With several workers, each follows the store on its own and keeps serving its version when a change fails to
load. A worker started later (the replacement of one that died) reads the store as it is then; if that version
fails, it alone would serve nothing while its siblings serve the last good one. So after each load that
succeeds, a worker copies the checkpoint's files into a folder the supervisor made for the run, and a worker
whose load of a model fails before it ever served that model loads the copy instead (verified again, like any
load). A copy is kept only if it is what was loaded (the manifest's version and the weights' sha256): a store
rewritten in between leaves the previous copy in place.

Layout: ``ROOT/MODEL/KEY/MODEL/`` holds one version's files (``ROOT/MODEL/KEY`` acts as its model store, so that
paths in messages read as in the real store), and ``ROOT/MODEL/current`` names the latest ``KEY``. The previous
version is kept beside it, for a worker reading it at that moment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from app.store import MANIFEST_FILE, CheckpointError, Manifest, ModelStore, read_manifest
from app.store.checkpoint import sha256_file

__all__ = ["ServedCopies"]

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.safetensors"  # as app.training.record writes it; optional
_POINTER = "current"


class ServedCopies:
    """Copies of the versions served, under ``root`` (made and removed by the supervisor)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keep(self, name: str, source: Path, manifest: Manifest, store: ModelStore) -> None:
        """Copy the checkpoint in ``source`` (loaded as ``manifest``) and make it the one :meth:`latest` gives.

        Never raises: a copy that cannot be made (a full disk) is logged and the previous one stays.
        """
        key = hashlib.sha256(f"{manifest.version}\0{manifest.weights.sha256}".encode()).hexdigest()[:20]
        folder = self.root / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / key).is_dir():
                self._copy(name, source, manifest, store, folder, key)
            previous = self._current(name)
            _point(folder, key)
            for stale in folder.iterdir():  # not a sibling's copy in progress (".KEY-…")
                if stale.is_dir() and not stale.name.startswith(".") and stale.name not in {key, previous}:
                    shutil.rmtree(stale, ignore_errors=True)
        except (OSError, CheckpointError) as exc:
            logger.warning("%s: no copy of version %s kept for later workers: %s", name, manifest.version, exc)

    def latest(self, name: str) -> Path | None:
        """The folder of the last copy of ``name`` kept (by any worker), or None."""
        key = self._current(name)
        folder = self.root / name / key / name if key else None
        return folder if folder is not None and (folder / MANIFEST_FILE).is_file() else None

    def store_of(self, folder: Path) -> Path:
        """The model store a copy from :meth:`latest` is read from."""
        return folder.parent

    def _current(self, name: str) -> str | None:
        try:
            return (self.root / name / _POINTER).read_text().strip() or None
        except OSError:
            return None

    @staticmethod
    def _copy(name: str, source: Path, manifest: Manifest, store: ModelStore, folder: Path, key: str) -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder))
        try:
            copy = scratch / name
            copy.mkdir()
            files = [MANIFEST_FILE, manifest.weights.file] + (
                [SAMPLES_FILE] if (source / SAMPLES_FILE).exists() else []
            )
            for file in files:
                shutil.copyfile(store.resolve(source / file), copy / file)
            copied = read_manifest(copy, store=ModelStore(scratch))
            same = copied.version == manifest.version and copied.weights.sha256 == manifest.weights.sha256
            if not same or sha256_file(copy / manifest.weights.file) != manifest.weights.sha256:
                raise CheckpointError(name, "the store changed after the load")
            os.rename(scratch, folder / key)
        except OSError:
            if not (folder / key).is_dir():  # else a sibling kept the same version first
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _point(folder: Path, key: str) -> None:
    scratch = folder / f".{_POINTER}-{os.getpid()}"
    scratch.write_text(key)
    os.replace(scratch, folder / _POINTER)
