"""The hey engine: one ``hey -o csv`` process per target, run side by side, every request's latency parsed.

hey (Debian package ``hey``) is a Go load generator; it reaches rates a Python client cannot. Limits
worth knowing, and reported in every run's notes:

- it sends one body per process, so each target's first image is sent over and over;
- its CSV lists answered requests only: transport errors (refused connections, client timeouts) are
  counted as the shortfall against the planned count when the run ends by count, and unknown when
  it is stopped by duration;
- its open loop is ``-c`` workers each limited to ``-q`` requests/s: a worker waiting for a slow
  answer sends nothing meanwhile, so the offered rate holds only while ``concurrency`` workers
  suffice (give it many);
- it cannot show headers, so Retry-After is checked with httpx probes by the overload scenario.

Both bounds hold: ``-n`` caps the count, and the process gets SIGINT at ``max_duration`` (hey then
lets requests in flight finish and prints what it has).
"""

from __future__ import annotations

import csv
import math
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from loadtest.engines.base import LoadSpec, RunResult
from loadtest.stats import RequestRecord
from loadtest.targets import Target

__all__ = ["HeyEngine", "parse_hey_csv"]

_GRACE = 5.0  # seconds hey gets, after SIGINT and the request timeout, to print its CSV


def parse_hey_csv(text: str, label: str) -> list[RequestRecord]:
    """Records from ``hey -o csv`` output (columns response-time, ..., status-code, offset; seconds)."""
    rows = csv.DictReader(text.splitlines())
    return [
        RequestRecord(
            label=label, start=float(r["offset"]), latency=float(r["response-time"]), status=int(r["status-code"])
        )
        for r in rows
    ]


class HeyEngine:
    """Runs ``hey``; several targets run as parallel processes sharing the concurrency and the rate."""

    name = "hey"

    def __init__(self, executable: str = "hey") -> None:
        found = shutil.which(executable)
        if found is None:
            raise FileNotFoundError(f"{executable!r} not found on PATH; install it with `apt-get install -y hey`")
        self.executable = found

    def run(self, spec: LoadSpec) -> RunResult:
        """Run ``spec`` to its count or duration bound; see the module docstring for hey's limits."""
        share = len(spec.targets)
        workers = max(1, spec.concurrency // share)
        per_target = max(workers, math.ceil(spec.max_requests / share))
        planned = workers * (per_target // workers)  # hey gives each worker n // c requests
        with tempfile.TemporaryDirectory(prefix="loadtest-hey-") as tmp:
            origin = time.perf_counter()
            running = [self._start(t, spec, workers, per_target, Path(tmp), i) for i, t in enumerate(spec.targets)]
            interrupted = _wait_or_interrupt([p for p, _ in running], origin + spec.max_duration, spec.timeout)
            wall = time.perf_counter() - origin
            records = [r for (_, out), t in zip(running, spec.targets, strict=True) for r in _read(out, t)]
        notes = [f"hey: {workers} workers and {planned} planned requests per target, one image per target"]
        if interrupted:
            notes.append("stopped by duration: transport errors (no HTTP answer) are not visible in hey's CSV")
        else:
            missing = planned * share - len(records)
            notes.append(f"transport errors (planned minus answered): {missing}")
        return RunResult(
            engine=self.name,
            spec=spec,
            records=sorted(records, key=lambda r: r.start),
            wall=wall,
            stopped_by="duration" if interrupted else "count",
            notes=notes,
        )

    def _start(
        self, target: Target, spec: LoadSpec, workers: int, count: int, tmp: Path, index: int
    ) -> tuple[subprocess.Popen[bytes], Path]:
        args = [self.executable, "-n", str(count), "-c", str(workers), "-m", target.method, "-o", "csv"]
        args += ["-t", str(max(1, math.ceil(spec.timeout)))]
        if spec.rate is not None:
            args += ["-q", f"{spec.rate / len(spec.targets) / workers:.6f}"]
        if target.bodies:
            body = tmp / f"body-{index}"
            body.write_bytes(target.bodies[0])
            args += ["-D", str(body), "-T", target.content_type or "application/octet-stream"]
        out = tmp / f"out-{index}.csv"
        with out.open("wb") as sink, out.with_suffix(".err").open("wb") as errors:
            return subprocess.Popen([*args, target.url], stdout=sink, stderr=errors), out


def _wait_or_interrupt(processes: list[subprocess.Popen[bytes]], deadline: float, timeout: float) -> bool:
    """Wait for every process; SIGINT those still running at ``deadline``. True if any was interrupted."""
    interrupted = False
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            interrupted = True
    for process in processes:
        try:
            process.wait(timeout=timeout + _GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError("hey did not stop within the request timeout after SIGINT") from None
    return interrupted


def _read(out: Path, target: Target) -> list[RequestRecord]:
    errors = out.with_suffix(".err").read_text().strip()
    if errors:
        raise RuntimeError(f"hey failed for {target.url}: {errors}")
    return parse_hey_csv(out.read_text(), target.label)
