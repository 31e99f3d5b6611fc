"""The Ray Serve deployment: each replica runs the application :func:`app.serving.app.create_app` builds.

With Ray's direct ingress (``RAY_SERVE_ENABLE_HA_PROXY=1``, deploy/ray/ray.env) every replica serves HTTP on a
port of its own, with a uvicorn server Ray starts in the replica's event loop, and the HAProxy of each node sends
each request straight to one of them; without it, Ray's Python proxy on each node calls the replica as an actor.
Either way Ray's ``@serve.ingress`` hands the request to the app as raw ASGI (``scope, receive, send``), so
:class:`~app.serving.app.FoldServeAPI`'s ``__call__`` answers the inference routes before FastAPI exactly as under
uvicorn; every other route, error and limit the app enforces is the same code. The app is built late, inside the
replica (``__serve_build_asgi_app__``), from the ``FOLDSERVE_*`` variables of the replica's runtime environment:
nothing is pickled but the options below. Ray then runs the app's lifespan, which loads, simplifies and verifies
the store as a single process does; :func:`~app.serving.ray.startup.waiting_lifespan` holds the replica's start
until that has finished, and Ray opens the replica's port (and HAProxy adds it) only after.

The HTTP protocol in a replica is Ray's uvicorn, not foldserve's (:mod:`app.serving.http`): Ray builds that server
itself and takes no protocol class. The header rule is therefore applied to each parsed request by
:class:`~app.serving.http.HeaderLimits` (431 with the same body); what only a protocol can do, a deadline for
headers that arrive slowly, is HAProxy's (deploy/ray/ray.env). With direct ingress the replica reads the body from
HAProxy's connection as it arrives, so ``FOLDSERVE_MIN_UPLOAD_BYTES_PER_S`` times the client as in a single
process. Draining is Ray's: a stopping replica leaves HAProxy's rotation and finishes those in flight for up to
``graceful_shutdown_timeout_s`` (the Serve config sets it to ``FOLDSERVE_DRAIN_S``'s default, 30 s).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application, Deployment
from ray.util import get_node_ip_address

from app.config import Settings, get_settings
from app.serving.http import HeaderLimits
from app.serving.ray.host_metrics import HostMetrics
from app.serving.ray.startup import waiting_lifespan
from app.serving.resources import admin_calls_reach_every_copy, thread_budget

__all__ = [
    "DEFAULT_METRICS_PORT",
    "FoldServeDeployment",
    "FoldServeReplica",
    "RayOptions",
    "build_app",
    "replica_settings",
]

DEFAULT_METRICS_PORT = 8002
"""Where each host's replicas answer Prometheus: beside 8000 (HTTP) and 8001 (gRPC)."""


class RayOptions(BaseModel):
    """What a Serve config's ``args`` may set (the service's own settings come from ``FOLDSERVE_*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_port: int = Field(
        default=DEFAULT_METRICS_PORT,
        ge=0,
        le=65535,
        description="port on every host where its replicas answer Prometheus together; 0: a free port (tests)",
    )
    metrics_root: Path = Field(
        default=Path(tempfile.gettempdir()) / "foldserve-ray-metrics",
        description="where the replicas of a host keep their multiprocess metric files",
    )


class FoldServeReplica:
    """One replica: the whole service (every model, both variants) in one Ray actor.

    Args:
        options: a :class:`RayOptions` or its fields as a dict.
    """

    def __init__(self, options: RayOptions | dict[str, Any] | None = None) -> None:
        self.options = RayOptions.model_validate(options or {})

    async def __serve_build_asgi_app__(self) -> Any:
        """Build the app in the replica, its metrics in the host's shared folder. Called once by Ray."""
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        settings = replica_settings(get_settings(), cpus)
        _log_through_serve()
        from app.serving.app import create_app  # torch and the web stack: in the replica, not where it was bound

        host = HostMetrics(self.options.metrics_root, get_node_ip_address(), self.options.metrics_port)
        with host.joined():  # the first metric files appear under the host's lock
            app = create_app(settings)
        app.router.lifespan_context = waiting_lifespan(app.router.lifespan_context, host.serving)
        return HeaderLimits(app, settings)


FoldServeDeployment: Deployment = serve.deployment(
    name="FoldServe",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,
    graceful_shutdown_timeout_s=30,
)(serve.ingress()(FoldServeReplica))
"""The deployment: :class:`FoldServeReplica` behind Serve's ASGI ingress (the Serve config overrides these options)."""


def replica_settings(settings: Settings, cpus: float) -> Settings:
    """The settings of one replica: one process, its threads sized by the CPUs Ray reserved for it.

    A replica is one process, and the cores it may use are its ``num_cpus``, not the machine's: its threads
    follow :func:`~app.serving.resources.thread_budget` with those CPUs as the cores.

    Raises:
        ValueError: ``FOLDSERVE_WORKERS`` is not 1 (a replica scales with replicas, not forks); or the repository's
            load and unload are on (``FOLDSERVE_ADMIN_TOKEN``) without ``FOLDSERVE_MODEL_CONTROL=poll``: a call
            through Ray's ingress would reach one replica, as a call reaches one of several workers, which the
            repository refuses for workers.
    """
    if settings.workers != 1:
        raise ValueError(f"FOLDSERVE_WORKERS must be 1 in a Ray replica (scale with replicas), got {settings.workers}")
    if settings.admin_token is not None and not admin_calls_reach_every_copy(settings, several=True):
        raise ValueError(
            "FOLDSERVE_ADMIN_TOKEN is set with FOLDSERVE_MODEL_CONTROL=explicit: a load or unload through Ray's "
            "ingress reaches one replica; set FOLDSERVE_MODEL_CONTROL=poll and change the model store instead"
        )
    threads = thread_budget(settings, max(1, int(cpus)))
    return settings.model_copy(update={"torch_threads": threads.torch, "decode_threads": threads.decode})


def _log_through_serve() -> None:
    """foldserve's own log lines (model loading, failures) into the replica's log, beside Ray's."""
    ours, serve_logger = logging.getLogger("app"), logging.getLogger("ray.serve")
    ours.setLevel(logging.INFO)
    ours.handlers = list(serve_logger.handlers)
    ours.propagate = False


def build_app(args: dict[str, Any]) -> Application:
    """The Serve application, for a Serve config's ``import_path: app.serving.ray:build_app``.

    Args:
        args: the config's ``args`` (:class:`RayOptions` fields).
    """
    return FoldServeDeployment.bind(RayOptions.model_validate(args).model_dump(mode="json"))
