"""Settings every test shares: exported runtime graphs go to one temporary folder of this session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def runtime_cache() -> Iterator[str]:
    """``FOLDSERVE_RUNTIME_CACHE`` for every Settings and every server a test starts: never the user's own cache.

    One folder for the session, so a tiny model's graph is exported once and read back (and verified) after.
    """
    folder = tempfile.mkdtemp(prefix="foldserve-test-runtimes-")
    previous = os.environ.get("FOLDSERVE_RUNTIME_CACHE")
    os.environ["FOLDSERVE_RUNTIME_CACHE"] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("FOLDSERVE_RUNTIME_CACHE", None)
        else:
            os.environ["FOLDSERVE_RUNTIME_CACHE"] = previous
        shutil.rmtree(folder, ignore_errors=True)
