"""The models the service knows: every checkpoint in the model store, loading, ready or failed.

:meth:`ModelRegistry.discover` lists the store; :meth:`ModelRegistry.load_all` runs the loading pipeline
(:func:`app.serving.loading.load_model`) for each model in a worker thread, one after the other, then starts
a :class:`DynamicBatcher` per variant. A model that fails keeps its reason and the others are served.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from app.config import Settings
from app.serving.batching import DynamicBatcher
from app.serving.errors import ModelNotFound, ModelNotReady, Unavailable
from app.serving.loading import LoadedModel, load_model
from app.serving.metrics import VARIANTS, ServingMetrics
from app.simplify import SimplificationError
from app.store import CheckpointError, discover_models

__all__ = ["ModelEntry", "ModelRegistry"]

logger = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed"]


@dataclass
class ModelEntry:
    """One model of the store, whatever its state."""

    name: str  # the folder's name, used in URLs and metric labels
    path: Path
    status: Status = "loading"
    reason: str | None = None  # why it failed
    loaded: LoadedModel | None = None
    report: dict[str, Any] | None = None  # the simplification report, also kept when verification failed
    batchers: dict[str, DynamicBatcher] = field(default_factory=dict)


class ModelRegistry:
    """Every model of ``settings.model_store``, and the batchers of those that are ready."""

    def __init__(self, settings: Settings, metrics: ServingMetrics, device: torch.device) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = device
        self.entries: dict[str, ModelEntry] = {}

    def discover(self) -> None:
        """List the store's models (all ``loading``) and create their metric series."""
        for path in discover_models(self.settings.model_store):
            self.entries[path.name] = ModelEntry(path.name, path)
            self.metrics.add_model(path.name)
        if not self.entries:
            logger.warning("no models found in %s", self.settings.model_store)

    async def load_all(self) -> None:
        """Load every discovered model in turn, off the event loop."""
        for entry in self.entries.values():
            await self._load(entry)

    async def _load(self, entry: ModelEntry) -> None:
        logger.info("loading %s from %s", entry.name, entry.path)
        try:
            loaded = await asyncio.to_thread(load_model, entry.path, self.settings, self.device)
        except (CheckpointError, SimplificationError) as exc:
            self._fail(entry, str(exc), getattr(exc, "report", None))
            return
        except Exception as exc:  # a bug or a resource problem: keep serving the other models
            logger.exception("loading %s failed unexpectedly", entry.name)
            self._fail(entry, f"unexpected error while loading: {type(exc).__name__}: {exc}", None)
            return
        for variant in VARIANTS:
            batcher = DynamicBatcher(
                getattr(loaded, variant),
                max_batch_size=self.settings.max_batch_size,
                max_wait=self.settings.max_wait_ms / 1000,
                max_queue_size=self.settings.max_queue_size,
                device=self.device,
                metrics=self.metrics.for_batcher(entry.name, variant),
                retry_after_s=self.settings.retry_after_s,
            )
            batcher.start()
            entry.batchers[variant] = batcher
        entry.loaded, entry.report, entry.status = loaded, loaded.report, "ready"
        self._record(entry.name, loaded)
        logger.info("%s ready: %s, speedup %.2fx", entry.name, loaded.report["kind"], loaded.speedup)

    def _fail(self, entry: ModelEntry, reason: str, report: dict[str, Any] | None) -> None:
        logger.error("model %s is not served: %s", entry.name, reason)
        entry.status, entry.reason, entry.report = "failed", reason, report or None

    def _record(self, name: str, loaded: LoadedModel) -> None:
        m, report = self.metrics, loaded.report
        for variant, suffix in (("collapsed", "after"), ("original", "before")):
            m.model_parameters.labels(model=name, variant=variant).set(report[f"params_{suffix}"])
            m.model_macs.labels(model=name, variant=variant).set(report[f"macs_{suffix}"])
        for measure in ("max_abs", "max_rel"):
            m.verification_error.labels(model=name, measure=measure).set(report[f"{measure}_error"])
        for stage, seconds in loaded.stage_seconds.items():
            m.load_seconds.labels(model=name, stage=stage).set(seconds)
        m.speedup_ratio.labels(model=name).set(loaded.speedup)
        m.model_ready.labels(model=name).set(1)

    @property
    def ready(self) -> list[str]:
        """Names of the models that serve, sorted."""
        return [name for name, entry in self.entries.items() if entry.status == "ready"]

    def get(self, name: str) -> ModelEntry:
        """The model called ``name``, whatever its state.

        Raises:
            ModelNotFound: no such model in the store.
        """
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(self.entries) or "none"
            raise ModelNotFound(f"unknown model {name!r}; known models: {known}") from None

    def batcher(self, name: str | None, variant: str) -> tuple[ModelEntry, DynamicBatcher]:
        """The batcher for a request: ``name`` or the default model, ``variant`` of it.

        Raises:
            ModelNotFound: no such model.
            ModelNotReady: it is still loading (retry later) or it failed (the reason is in the message).
        """
        entry = self.get(name or self._default_name())
        if entry.status == "loading":
            raise ModelNotReady(f"model {entry.name!r} is still loading", retry_after_s=self.settings.retry_after_s)
        if entry.status == "failed":
            raise ModelNotReady(
                f"model {entry.name!r} failed to load: {entry.reason}", retry_after_s=self.settings.retry_after_s
            )
        return entry, entry.batchers[variant]

    def _default_name(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        if self.ready:
            return self.ready[0]
        raise Unavailable("no model is ready yet", retry_after_s=self.settings.retry_after_s)

    async def close(self) -> None:
        """Stop every batcher."""
        for entry in self.entries.values():
            for batcher in entry.batchers.values():
                await batcher.close()
