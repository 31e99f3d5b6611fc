"""The models the service knows: every checkpoint in the model store, loading, ready or failed.

:meth:`ModelRegistry.discover` lists the store; :meth:`ModelRegistry.load_all` runs the loading pipeline
(:func:`app.serving.loading.load_model`) for each model in a worker thread, one after the other, then makes
its two :class:`Variant` s, each with its own :class:`DynamicBatcher`. A model that fails keeps its reason
and the others are served. :meth:`ModelRegistry.readiness` is the service's one readiness rule, behind
``/readyz``, ``/v2/health/ready`` and gRPC's ``ServerReady``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from app.config import RUNTIME_NAMES, Settings
from app.runtimes import NoRuntimePassed
from app.serving.batching import DynamicBatcher
from app.serving.errors import LoadFailed, ModelFailed, ModelNotFound, ModelNotReady, Unavailable
from app.serving.loading import LoadedModel, load_model
from app.serving.metrics import VARIANTS, ServingMetrics, VariantSeries
from app.serving.resources import lowered_priority
from app.serving.served_copies import ServedCopies
from app.simplify import SimplificationError
from app.store import CheckpointError, ModelStore, discover_models

__all__ = ["ModelEntry", "ModelRegistry", "Readiness", "Variant"]

logger = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "unloaded"]


@dataclass
class Variant:
    """One network of a ready model, as the data plane runs it."""

    model: str  # the model's name
    name: str  # "collapsed" or "original"
    loaded: LoadedModel
    batcher: DynamicBatcher
    series: VariantSeries
    inline: bool  # its batch-1 forward pass measured at most settings.inline_max_forward_us at load

    @property
    def collapsed(self) -> bool:
        return self.name == "collapsed"


@dataclass
class ModelEntry:
    """One model of the store, whatever its state."""

    name: str  # the folder's name, used in URLs and metric labels
    path: Path
    status: Status = "loading"
    reason: str | None = None  # why it failed, or was unloaded
    last_error: str | None = None  # why the last load failed, also while an older version still serves
    loaded: LoadedModel | None = None
    report: dict[str, Any] | None = None  # the simplification report, also kept when verification failed
    variants: dict[str, Variant] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    """Whether the service is ready, and what keeps it from being so."""

    ready: bool
    models: list[str]  # the models that serve
    loading: list[str]  # the models still loading
    failed: dict[str, str]  # each model that failed to load, and why
    strict: bool  # FOLDSERVE_STRICT_READINESS: a failed model also keeps the service unready

    @property
    def reason(self) -> str:
        """Why the service is not ready (empty when it is)."""
        if self.ready:
            return ""
        failed = "; ".join(f"{name}: {reason}" for name, reason in self.failed.items())
        if self.loading:
            return f"still loading: {', '.join(self.loading)}"
        if not self.models and not self.failed:
            return "the model store holds no model"
        if not self.models:
            return f"no model is ready; failed to load: {failed}"
        return f"strict readiness and models failed to load: {failed}"


class ModelRegistry:
    """Every model of ``settings.model_store``, and the variants of those that are ready.

    Args:
        copies: with several workers, where each keeps a copy of the version it serves, and where a worker that
            cannot load a model it has not served yet finds the one its siblings serve
            (:mod:`app.serving.served_copies`); None: one process.
    """

    def __init__(
        self, settings: Settings, metrics: ServingMetrics, device: torch.device, copies: ServedCopies | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = device
        self.copies = copies
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
        for entry in list(self.entries.values()):
            with contextlib.suppress(LoadFailed):  # logged, and kept in the entry
                await self.load(entry)
        # the objects made so far (modules, models, the web stack) live as long as the process: moved out of the
        # collector's way, a full collection no longer walks them in the middle of a request (a tail-latency spike)
        gc.freeze()

    async def load(self, entry: ModelEntry) -> None:
        """Load (or load again) ``entry`` from its folder, off the event loop, and serve it once verified.

        A version already served keeps answering until the new one is ready; then requests go to the new
        one, and the old one finishes what it holds. A load that fails leaves the served version serving
        (the failure is kept in ``entry.last_error``); for a model not served yet, it loads the copy another
        worker kept of the version it serves, if there is one, or marks the model ``failed``.

        Raises:
            LoadFailed: the folder cannot be loaded (the message says why).
        """
        logger.info("loading %s from %s", entry.name, entry.path)
        if entry.status != "ready":
            entry.status = "loading"
        last_error = None  # a failure of the store's version, when a kept copy serves instead
        try:
            loaded = await _in_daemon_thread(f"foldserve-load-{entry.name}", self._load_and_keep, entry)
        except Exception as exc:
            reason, report = _failure(entry, exc)
            kept = await self._load_kept_copy(entry, reason) if entry.status != "ready" else None
            if kept is None:
                if entry.status == "ready":
                    logger.error("loading %s again failed; the version served stays: %s", entry.name, reason)
                else:
                    logger.error("model %s is not served: %s", entry.name, reason)
                    entry.status, entry.reason, entry.report = "failed", reason, report
                entry.last_error = reason
                raise LoadFailed(f"model {entry.name!r} was not loaded: {reason}") from None
            loaded, last_error = kept, reason
        previous = entry.variants
        entry.variants = {name: self._variant(entry.name, name, loaded) for name in VARIANTS}
        entry.loaded, entry.report, entry.status = loaded, loaded.report, "ready"
        entry.reason, entry.last_error = None, last_error
        self._record(entry)
        self._retire(previous)
        logger.info(
            "%s ready (version %s): %s, forward pass %.1f µs collapsed (%s, %s) and %.1f µs original (%s, %s)",
            entry.name,
            loaded.manifest.version,
            loaded.report["kind"],
            *(
                x
                for v in entry.variants.values()
                for x in (loaded.latency_s[v.name] * 1e6, loaded.runtimes[v.name].name, _path(v))
            ),
        )

    def _load_and_keep(self, entry: ModelEntry) -> LoadedModel:
        """Load ``entry`` from the store (in a worker thread) and, with several workers, keep a copy of it."""
        loaded = load_model(entry.path, self.settings, self.device)
        if self.copies is not None:
            store = ModelStore(self.settings.model_store, allow_links_out=self.settings.allow_symlinks_out_of_store)
            self.copies.keep(entry.name, entry.path, loaded.manifest, store)
        return loaded

    async def _load_kept_copy(self, entry: ModelEntry, reason: str) -> LoadedModel | None:
        """The version another worker serves, loaded from its copy; None if there is none or it fails too."""
        copy = self.copies.latest(entry.name) if self.copies is not None else None
        if self.copies is None or copy is None:
            return None
        logger.error("%s: the store's version fails (%s); loading the one another worker serves", entry.name, reason)
        settings = self.settings.model_copy(update={"model_store": self.copies.store_of(copy)})
        try:
            return await _in_daemon_thread(f"foldserve-load-{entry.name}", load_model, copy, settings, self.device)
        except Exception as exc:
            logger.error("%s: the copy another worker kept fails too: %s", entry.name, _failure(entry, exc)[0])
            return None

    def unload(self, entry: ModelEntry) -> None:
        """Stop serving ``entry``: new requests are refused at once, requests already inside finish."""
        previous = entry.variants
        entry.variants, entry.loaded, entry.status, entry.reason = {}, None, "unloaded", "unloaded at runtime"
        self.metrics.model_ready.labels(model=entry.name).set(0)
        self._retire(previous)
        logger.info("%s unloaded", entry.name)

    def _retire(self, variants: dict[str, Variant]) -> None:
        """Close the batchers and runtimes of variants no longer served, once no request can still hold them: a
        request resolves its variant once, and every request ends by its deadline."""
        if not variants:
            return
        loop = asyncio.get_running_loop()
        grace = self.settings.request_timeout_s + 1.0
        for variant in variants.values():
            loop.call_later(grace, _close_soon, variant)

    def _variant(self, model: str, name: str, loaded: LoadedModel) -> Variant:
        series = self.metrics.variant(model, name)
        chosen = loaded.runtimes[name]
        batcher = DynamicBatcher(
            chosen.runtime,
            max_batch_size=chosen.max_batch_size,
            max_wait=self.settings.max_wait_ms / 1000,
            max_queue_size=self.settings.max_queue_size,
            device=chosen.runtime.device,
            metrics=series,
            retry_after_s=self.settings.retry_after_s,
        )
        batcher.start()
        inline = loaded.latency_s[name] * 1e6 <= self.settings.inline_max_forward_us
        return Variant(model, name, loaded, batcher, series, inline)

    def _record(self, entry: ModelEntry) -> None:
        m, name = self.metrics, entry.name
        assert entry.loaded is not None
        loaded, report = entry.loaded, entry.loaded.report
        for variant, suffix in (("collapsed", "after"), ("original", "before")):
            m.model_parameters.labels(name, variant).set(report[f"params_{suffix}"])
            m.model_macs.labels(name, variant).set(report[f"macs_{suffix}"])
            m.inline.labels(name, variant).set(int(entry.variants[variant].inline))
            chosen = loaded.runtimes[variant]
            m.variant_max_batch.labels(name, variant).set(chosen.max_batch_size)
            for runtime in RUNTIME_NAMES:
                m.variant_runtime.labels(name, variant, runtime).set(int(runtime in chosen.parts))
        for measure in ("max_abs", "max_rel"):
            m.verification_error.labels(model=name, measure=measure).set(report[f"{measure}_error"])
        for stage, seconds in loaded.stage_seconds.items():
            m.load_seconds.labels(model=name, stage=stage).set(seconds)
        m.forward_speedup.labels(model=name).set(loaded.speedup)
        m.model_ready.labels(model=name).set(1)

    @property
    def ready(self) -> list[str]:
        """Names of the models that serve, sorted."""
        return [name for name, entry in self.entries.items() if entry.status == "ready"]

    def readiness(self) -> Readiness:
        """The readiness rule: every model has finished loading (ready or failed) and at least one is ready; in
        strict mode (``settings.strict_readiness``) none may have failed either."""
        loading = [name for name, entry in self.entries.items() if entry.status == "loading"]
        failed = {name: entry.reason or "" for name, entry in self.entries.items() if entry.status == "failed"}
        ready = self.ready
        strict = self.settings.strict_readiness
        verdict = not loading and bool(ready) and not (strict and failed)
        return Readiness(verdict, ready, loading, failed, strict)

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

    def variant(self, name: str | None, variant: str) -> Variant:
        """The variant a request asks for: of model ``name``, or of the default model.

        Raises:
            ModelNotFound: no such model. Unavailable: none named, and none ready.
            ModelNotReady: it is still loading (retry later).
            ModelFailed: it failed to load (the reason is in the message).
        """
        name = name or self.default
        if name is None:
            raise Unavailable("no model is ready yet", retry_after_s=self.settings.retry_after_s)
        entry = self.get(name)
        found = entry.variants.get(variant)
        if found is not None:
            return found
        if entry.status == "loading":
            raise ModelNotReady(f"model {entry.name!r} is still loading", retry_after_s=self.settings.retry_after_s)
        if entry.status == "unloaded":
            raise ModelNotFound(f"model {entry.name!r} is unloaded; loading it again is an operator's call")
        raise ModelFailed(f"model {entry.name!r} failed to load: {entry.reason}")

    @property
    def default(self) -> str | None:
        """The model of a request that names none: ``FOLDSERVE_DEFAULT_MODEL``, else the first ready one."""
        return self.settings.default_model or (self.ready[0] if self.ready else None)

    async def close(self) -> None:
        """Stop every batcher."""
        for entry in self.entries.values():
            for variant in entry.variants.values():
                await variant.batcher.close()


def _close_soon(variant: Variant) -> None:
    task = asyncio.get_running_loop().create_task(_close(variant), name="foldserve-retire-variant")
    _RETIRING.add(task)  # keep a reference until it is done, as asyncio asks
    task.add_done_callback(_RETIRING.discard)


_RETIRING: set[asyncio.Task[None]] = set()


async def _close(variant: Variant) -> None:
    """Stop ``variant``'s batcher, then release its runtime (sessions, compiled models)."""
    await variant.batcher.close()
    variant.loaded.runtimes[variant.name].runtime.close()


def _failure(entry: ModelEntry, exc: Exception) -> tuple[str, dict[str, Any] | None]:
    """Why loading ``entry`` failed, as a client may read it, and the simplification report if there is one."""
    if isinstance(exc, CheckpointError | SimplificationError | NoRuntimePassed):
        return str(exc), getattr(exc, "report", None) or None
    logger.exception("loading %s failed unexpectedly", entry.name, exc_info=exc)  # a bug or a resource problem
    return f"unexpected error while loading: {type(exc).__name__}", None


def _path(variant: Variant) -> str:
    return "inline" if variant.inline else "batched"


T = TypeVar("T")


async def _in_daemon_thread(name: str, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a daemon thread of its own, awaited: a load still running when the process stops
    (SIGTERM in the middle of a slow reload) is abandoned at exit, where one in ``asyncio.to_thread``'s executor
    would hold the exit until it ended, past the drain time. Nothing it leaves matters: the store is only read,
    and the runtime cache is written to temporary files renamed into place. It runs at a lowered priority
    (:func:`~app.serving.resources.lowered_priority`): the requests served meanwhile keep their share of the cores."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            with lowered_priority():  # serving keeps its share of the cores
                result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, which decides what it means
            outcome = functools.partial(future.set_exception, exc)
        else:
            outcome = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
