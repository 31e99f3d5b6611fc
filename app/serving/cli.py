"""``python -m app serve``: run the service with uvicorn, settings from ``FOLDSERVE_*``."""

from __future__ import annotations

import argparse
import socket

__all__ = ["add_parsers", "serve"]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve every model of the model store over HTTP",
        description="Serve every model of FOLDSERVE_MODEL_STORE (default ./model_store) over HTTP. "
        "All other settings come from FOLDSERVE_* environment variables (see docs/operations.md).",
    )
    parser.add_argument("--host", help="address to listen on (default: FOLDSERVE_HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: FOLDSERVE_PORT, else 8000)")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Start uvicorn with the app built from the settings; returns when the server stops."""
    from app.config import get_settings
    from app.serving.workers import run_server

    settings = get_settings()
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if "port" in overrides and not 1 <= overrides["port"] <= 65535:
        raise ValueError(f"--port must be between 1 and 65535, got {overrides['port']}")
    settings = settings.model_copy(update=overrides)
    if not settings.model_store.is_dir():
        raise FileNotFoundError(f"model store {settings.model_store} is not a folder (set FOLDSERVE_MODEL_STORE)")
    if settings.grpc_port and settings.workers > 1:
        _check_port_free(settings.host, settings.grpc_port)
    run_server(settings)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a gRPC port that another server holds: workers bind it with ``SO_REUSEPORT``, which would share it
    with that server (of the same user) unnoticed. One worker binds without, and fails by itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot serve gRPC on {host}:{port} (FOLDSERVE_GRPC_PORT): {exc.strerror}") from None
