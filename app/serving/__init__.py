"""The HTTP service: FastAPI app factory, routes, image decoding, dynamic batching and metrics."""

from app.serving.app import create_app

__all__ = ["create_app"]
