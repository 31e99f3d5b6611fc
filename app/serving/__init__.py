"""The HTTP service: FastAPI app factory, routes, image decoding, dynamic batching and metrics.

``create_app`` is imported on first use, so that commands which never serve (``python -m app import``,
``train``, ``--help``) do not pay for importing the web stack.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.serving.app import create_app

        return create_app
    raise AttributeError(f"module 'app.serving' has no attribute {name!r}")
