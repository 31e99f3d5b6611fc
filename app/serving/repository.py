"""The model repository at runtime: the Open Inference Protocol's repository extension, as Triton has it.

- ``GET|POST /v2/repository/index``: every model folder of the store, loaded or not, with its state.
- ``POST /v2/repository/models/{name}/load``: load a new folder, or load a changed one again. The version
  already served keeps answering while the new one loads, simplifies and verifies in the background; then
  requests switch to it and the old one finishes what it holds. A load that fails leaves the old version
  serving and answers 400 with the reason. The call returns once the load is over (as Triton's does).
- ``POST /v2/repository/models/{name}/unload``: stop serving a model; requests already inside finish.

Load and unload change what the server runs: they need ``Authorization: Bearer <FOLDSERVE_ADMIN_TOKEN>``
(compared in constant time); with no token set they are off and answer 403. The index is read-only and
open, like ``/models``. With several workers (``FOLDSERVE_WORKERS``) a call reaches one worker only, so the
calls are refused (409): ``FOLDSERVE_MODEL_CONTROL=poll`` makes every worker follow the store instead,
loading new and changed folders and unloading removed ones every ``FOLDSERVE_MODEL_POLL_S`` seconds. A folder that
does not load, or that is still there without its manifest (half replaced), leaves the version served serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from app.config import Settings
from app.serving.errors import Forbidden, InvalidParameter, ModelNotFound, ServingError, Unauthorized
from app.serving.registry import ModelEntry, ModelRegistry
from app.serving.resources import admin_calls_reach_every_copy
from app.store import MANIFEST_FILE

__all__ = ["ModelControl", "RepositoryModel", "router"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_STATES = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "unloaded": "UNAVAILABLE"}


class Conflict(ServingError):
    status_code = 409
    code = "conflict"


class RepositoryModel(BaseModel):
    """One model folder of the store, as the repository index lists it (Triton's fields)."""

    name: str
    version: str | None = None
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str = ""


class ModelControl:
    """Loads and unloads the registry's models at runtime, one change per model at a time."""

    def __init__(self, models: ModelRegistry, settings: Settings) -> None:
        self.models = models
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, tuple[tuple[str, int, int], ...]] = {}

    def index(self) -> list[RepositoryModel]:
        """Every model folder of the store, and every model the registry knows."""
        names = sorted({*self.models.entries, *(p.name for p in self._folders())})
        return [self._describe(name) for name in names]

    async def load(self, name: str) -> ModelEntry:
        """Load ``name`` (new, changed or unloaded) and return its entry once the load is over.

        Raises:
            InvalidParameter: not a model name. ModelNotFound: no such folder in the store.
            LoadFailed: the folder does not load (the served version, if any, keeps serving).
        """
        path = self._folder(name)
        async with self._lock(name):
            entry = self.models.entries.get(name)
            if entry is None:
                entry = self.models.entries[name] = ModelEntry(name, path)
                self.models.metrics.add_model(name)
            await self.models.load(entry)
            self._seen[name] = _fingerprint(path)
            return entry

    async def unload(self, name: str) -> ModelEntry:
        """Stop serving ``name``.

        Raises:
            ModelNotFound: the registry does not know it.
        """
        async with self._lock(name):
            entry = self.models.get(name)
            self.models.unload(entry)
            return entry

    def remember_store(self) -> None:
        """Note what every model folder holds now, before the first loads read them: :meth:`follow_store` loads
        whatever changes after this, a change made while the first loads ran included."""
        self._seen = {p.name: _fingerprint(p) for p in self._folders()}

    async def follow_store(self) -> None:
        """Every ``model_poll_s`` seconds: load new and changed folders, unload the ones removed (call
        :meth:`remember_store` first). A poll that fails is logged, and the next one runs as usual."""
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self._poll_once()
            except Exception:  # a bug: logged with its traceback, and the store is still followed
                logger.exception("model store: a poll failed; polling goes on")

    async def _poll_once(self) -> None:
        try:
            folders = {p.name: p for p in self._folders()}
        except OSError as exc:  # unmounted, renamed, no permission: nothing was removed, nothing is unloaded
            store = self.settings.model_store
            logger.warning("model store %s cannot be read (%s); the models loaded keep serving", store, exc)
            return
        for name, path in folders.items():
            fingerprint = _fingerprint(path)
            if self._seen.get(name) != fingerprint:
                logger.info("model store: %s is new or changed, loading it", name)
                self._seen[name] = fingerprint
                try:
                    await self.load(name)
                except ServingError as exc:
                    logger.error("model store: %s", exc.message)
        for name, entry in list(self.models.entries.items()):
            if name in folders or entry.status == "unloaded":
                continue
            if (self.settings.model_store / name).is_dir():  # still there, without its manifest: half replaced
                self._keep_without_manifest(name)
                continue
            logger.info("model store: %s was removed, unloading it", name)
            self._seen.pop(name, None)
            await self.unload(name)

    def _keep_without_manifest(self, name: str) -> None:
        """A served model's folder lost its manifest: keep the version served, and say so once per change."""
        fingerprint = _fingerprint(self.settings.model_store / name)
        if self._seen.get(name) != fingerprint:
            self._seen[name] = fingerprint
            logger.warning(
                "model store: %s has no %s; the version served stays until the folder is whole again or removed",
                name,
                MANIFEST_FILE,
            )

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _folders(self) -> list[Path]:
        root = self.settings.model_store
        return sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST_FILE).is_file())

    def _folder(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise InvalidParameter(f"model name {name[:80]!r} is not a name (a-z, 0-9, '.', '_', '-', at most 64)")
        path = self.settings.model_store / name
        if not (path / MANIFEST_FILE).is_file():
            raise ModelNotFound(f"the model store has no model folder {name!r}")
        return path

    def _describe(self, name: str) -> RepositoryModel:
        entry = self.models.entries.get(name)
        if entry is None:
            return RepositoryModel(name=name, state="UNAVAILABLE", reason="not loaded")
        version = entry.loaded.manifest.version if entry.loaded else None
        reason = entry.last_error or (entry.reason if entry.status != "ready" else None) or ""
        return RepositoryModel(name=name, version=version, state=_STATES[entry.status], reason=reason)  # type: ignore[arg-type]


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each file of a model folder: a change to any is a new version."""
    try:
        files = [(p.name, p.stat()) for p in folder.iterdir() if p.is_file()]
    except OSError:
        return ()
    return tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in files))


router = APIRouter(prefix="/v2/repository", tags=["repository"])


def _control(request: Request, authorization: str | None) -> ModelControl:
    """The model control, once the caller has shown the admin token."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        raise Forbidden("the repository's load and unload are off: set FOLDSERVE_ADMIN_TOKEN to turn them on")
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.admin_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized("load and unload need the header 'Authorization: Bearer <FOLDSERVE_ADMIN_TOKEN>'")
    if not admin_calls_reach_every_copy(settings, several=settings.workers > 1):
        raise Conflict(
            f"with {settings.workers} workers a call reaches only one of them: set FOLDSERVE_MODEL_CONTROL=poll "
            "and change the model store instead"
        )
    control: ModelControl = request.app.state.model_control
    return control


@router.api_route("/index", methods=["GET", "POST"], response_model=list[RepositoryModel], include_in_schema=False)
async def repository_index(request: Request) -> list[RepositoryModel]:
    """Every model folder of the store with its state (READY, LOADING, UNAVAILABLE) and why. GET, or POST as
    Triton's clients send it; one route, so that a 405 lists both in ``Allow`` (app/serving/openapi.py documents
    it, since FastAPI would give both methods one operation id)."""
    control: ModelControl = request.app.state.model_control
    return control.index()


@router.post("/models/{name}/load", responses={401: {}, 403: {}, 404: {}, 409: {}})
async def repository_load(
    request: Request, name: str, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Load a model folder (again); returns once it serves, or 400 with why it did not load."""
    entry = await _control(request, authorization).load(name)
    return {"name": entry.name, "state": _STATES[entry.status]}


@router.post("/models/{name}/unload", responses={401: {}, 403: {}, 404: {}, 409: {}})
async def repository_unload(
    request: Request, name: str, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Stop serving a model; requests already inside finish."""
    entry = await _control(request, authorization).unload(name)
    return {"name": entry.name, "state": _STATES[entry.status]}
