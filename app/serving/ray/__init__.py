"""foldserve as a Ray Serve application (the optional ``ray`` extra: ``pip install 'foldserve[ray]'``).

``serve run deploy/ray/serve.yaml`` deploys :func:`build_app`: N replicas of :class:`FoldServeDeployment`, each
the whole service serving HTTP on its own port behind the HAProxy of its node (:mod:`app.serving.ray.deployment`),
started only once its store is loaded (:mod:`app.serving.ray.startup`), with the foldserve metrics of each host
summed on one port of it (:mod:`app.serving.ray.host_metrics`); ``foldserve-haproxy``
(:mod:`app.serving.ray.haproxy`) is the HAProxy Ray starts. docs/scaling.md says when to use it and what it costs.

The names below are imported on first use, so that ``foldserve-haproxy`` starts without importing Ray.
"""

import importlib
from typing import Any

__all__ = ["DEFAULT_METRICS_PORT", "FoldServeDeployment", "RayOptions", "build_app", "replica_settings"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'app.serving.ray' has no attribute {name!r}")
    try:
        import ray.serve  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
        raise ModuleNotFoundError(
            "foldserve's Ray Serve deployment needs the ray extra: pip install 'foldserve[ray]'", name=exc.name
        ) from exc
    return getattr(importlib.import_module("app.serving.ray.deployment"), name)
