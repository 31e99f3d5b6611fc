"""The flood scenario (``python -m loadtest flood``): other models' latency while one model is flooded with large
images to decode.

Each round measures a probe model's p50 at concurrency 1 alone, then again while hey floods another model with
multipart requests of large PNGs (each request within the per-request pixel budget, so every one is decoded or
refused for want of room, never for its size), and reports the ratio. Every run is bounded in time.
"""

from __future__ import annotations

import io
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["BOUNDARY", "flood_body", "parse_hey", "run_flood"]

BOUNDARY = "foldserve-flood-boundary"


def flood_body(images: int, side: int) -> bytes:
    """A multipart body of ``images`` PNGs of ``side`` x ``side`` pixels (a gradient: large to decode, small
    to send)."""
    pixels = (np.add.outer(np.arange(side), np.arange(side)) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return b"".join(part + buffer.getvalue() + b"\r\n" for _ in range(images)) + f"--{BOUNDARY}--\r\n".encode()


def parse_hey(output: str) -> dict[str, Any]:
    """p50 (seconds) and answers by status from hey's summary."""
    p50 = re.search(r"50% in ([\d.]+) secs", output)
    statuses = {code: int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    return {"p50_s": float(p50.group(1)) if p50 else float("nan"), "statuses": statuses}


def _hey(url: str, body: Path, content_type: str, concurrency: int, seconds: float) -> subprocess.Popen[str]:
    command = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        content_type,
        "-D",
        str(body),
        url,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _round(base: str, probe: str, target: str, digit: Path, flood: Path, seconds: float) -> dict[str, Any]:
    probe_url = f"{base}/predict?model={probe}"
    idle = parse_hey(_hey(probe_url, digit, "image/png", 1, seconds).communicate()[0])
    flooding = _hey(
        f"{base}/predict?model={target}", flood, f"multipart/form-data; boundary={BOUNDARY}", 16, seconds + 2
    )
    time.sleep(1.0)
    during = parse_hey(_hey(probe_url, digit, "image/png", 1, seconds).communicate()[0])
    flooded = parse_hey(flooding.communicate()[0])
    return {"idle": idle, "during": during, "flood": flooded["statuses"], "ratio": during["p50_s"] / idle["p50_s"]}


def run_flood(base: str, probes: list[str], target: str, *, repeat: int, seconds: float, side: int) -> dict[str, Any]:
    """Every probe model, ``repeat`` rounds each; medians of the p50s and their ratio."""
    with tempfile.TemporaryDirectory(prefix="foldserve-flood-") as tmp:
        digit, flood = Path(tmp) / "digit.png", Path(tmp) / "flood.bin"
        digit.write_bytes((Path(__file__).resolve().parents[1] / "examples" / "digit-7.png").read_bytes())
        flood.write_bytes(flood_body(2, side))
        rounds = {p: [_round(base, p, target, digit, flood, seconds) for _ in range(repeat)] for p in probes}
    return {
        probe: {
            "idle_p50_ms": statistics.median(r["idle"]["p50_s"] for r in runs) * 1e3,
            "flood_p50_ms": statistics.median(r["during"]["p50_s"] for r in runs) * 1e3,
            "ratio": statistics.median(r["ratio"] for r in runs),
            "flood_statuses": [r["flood"] for r in runs],
        }
        for probe, runs in rounds.items()
    }
