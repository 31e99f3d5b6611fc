"""Schemathesis against a real server: every check, every phase, a small example budget; 0 failures.

The full run (a larger budget) is a command in docs/operations.md; this one keeps the suite short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import Server
from tests.serving.conftest import write_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (the dev extra)")
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "store", "linear", kind="linear")
    with Server(tmp_path / "store", tmp_path / "server.log") as server:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{server.url}/openapi.json",
                "--checks=all",
                "--phases=examples,coverage,fuzzing,stateful",
                "--max-examples=15",
                "--workers=1",
                "--seed=1",
                "--suppress-health-check=all",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.serving.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in (tmp_path / "server.log").read_text()
