"""What a run asks for: one ``Target`` per kind of request (a variant's ``/predict``, or ``/healthz``)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

__all__ = ["VARIANTS", "Target", "healthz_target", "predict_target"]

VARIANTS: tuple[str, ...] = ("collapsed", "original")
"""The two variants foldserve serves for every model."""


@dataclass(frozen=True)
class Target:
    """One kind of request. Engines cycle through ``bodies`` (the httpx engine) or send the first (hey)."""

    label: str  # names the series in reports: "collapsed", "original", "healthz"
    method: str
    url: str
    bodies: tuple[bytes, ...] = ()
    content_type: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("GET", "POST"):
            raise ValueError(f"method must be GET or POST, got {self.method!r}")
        if self.method == "POST" and not self.bodies:
            raise ValueError(f"a POST target needs at least one body ({self.label})")


def predict_target(base_url: str, model: str, variant: str, images: list[bytes], *, top_k: int = 3) -> Target:
    """``POST /predict`` of one variant, each request one PNG image sent as a raw ``image/png`` body."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    query = urlencode({"model": model, "collapsed": str(variant == "collapsed").lower(), "top_k": top_k})
    return Target(
        label=variant,
        method="POST",
        url=f"{base_url.rstrip('/')}/predict?{query}",
        bodies=tuple(images),
        content_type="image/png",
    )


def healthz_target(base_url: str) -> Target:
    """``GET /healthz``: the floor of what the server and the engine can do, with no model work."""
    return Target(label="healthz", method="GET", url=f"{base_url.rstrip('/')}/healthz")
