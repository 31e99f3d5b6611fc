"""A real Prometheus scraping the soak's server with the shipped configuration (``deploy/prometheus/``, every 5 s),
and what it saw at the end: how many scrapes succeeded and the answers it counted."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from loadtest.server import free_port

__all__ = ["PrometheusRun", "prometheus"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


class PrometheusRun:
    """A running Prometheus on 127.0.0.1; :meth:`summary` queries it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"http://{self.address}/api/v1/query", params={"query": promql}, timeout=10).json()
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def _value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def summary(self, seconds: float) -> dict[str, Any]:
        """Scrapes of foldserve over the last ``seconds`` (all, and those that succeeded) and the answers it counts
        by status now."""
        window = f"{max(1, round(seconds))}s"
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            counted = self.query('sum by (status) (foldserve_requests_total{job="foldserve"})')
            return {
                "address": self.address,
                "scrapes": self._value(f'count_over_time(up{{job="foldserve"}}[{window}])'),
                "scrapes_up": self._value(f'sum_over_time(up{{job="foldserve"}}[{window}])'),
                "requests_by_status": {r["metric"].get("status", ""): float(r["value"][1]) for r in counted},
            }
        return {"address": self.address, "error": "Prometheus did not answer"}


@contextlib.contextmanager
def prometheus(target: str, work: Path, log: Path) -> Iterator[PrometheusRun | None]:
    """Prometheus scraping ``target`` (``HOST:PORT``) with deploy/prometheus/prometheus.yml and its rules, data in
    ``work``; None where no ``prometheus`` binary is installed. Stopped (SIGTERM, then SIGKILL) on leaving."""
    binary = shutil.which("prometheus")
    if binary is None:
        yield None
        return
    work.mkdir(parents=True, exist_ok=True)
    config = (DEPLOY / "prometheus.yml").read_text().replace('"127.0.0.1:8000"', f'"{target}"')
    (work / "prometheus.yml").write_text(config)
    shutil.copy(DEPLOY / "rules.yml", work / "rules.yml")
    address = f"127.0.0.1:{free_port()}"
    args = [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}"]
    with log.open("wb") as out:
        process = subprocess.Popen([*args, f"--web.listen-address={address}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}/-/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield PrometheusRun(address)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
