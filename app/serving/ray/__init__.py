"""foldserve as a Ray Serve application (the optional ``ray`` extra: ``pip install 'foldserve[ray]'``).

``serve run deploy/ray/serve.yaml`` deploys :func:`build_app`: N replicas of :class:`FoldServeDeployment`, each
the whole service (:mod:`app.serving.ray.deployment`), started only once its store is loaded
(:mod:`app.serving.ray.startup`), with the foldserve metrics of each host summed on one port of it
(:mod:`app.serving.ray.host_metrics`). docs/scaling.md says when to use it and what it costs.
"""

try:
    import ray.serve  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "foldserve's Ray Serve deployment needs the ray extra: pip install 'foldserve[ray]'", name=exc.name
    ) from exc

from app.serving.ray.deployment import (
    DEFAULT_METRICS_PORT,
    FoldServeDeployment,
    RayOptions,
    build_app,
    replica_settings,
)

__all__ = ["DEFAULT_METRICS_PORT", "FoldServeDeployment", "RayOptions", "build_app", "replica_settings"]
