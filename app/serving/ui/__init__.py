"""The comparison page: static files served by the app itself (no build step, no other origin), and the live
latency it charts (:mod:`app.serving.ui.stats`). ``FOLDSERVE_UI=false`` leaves every route out."""

from app.serving.ui.routes import CONTENT_SECURITY_POLICY, router
from app.serving.ui.stats import LiveStats

__all__ = ["CONTENT_SECURITY_POLICY", "LiveStats", "router"]
