"""The reference server: the least a service can do per request, to measure foldserve against.

``python -m loadtest reference --store model_store --port 8130`` serves ``POST /predict?model=&collapsed=``
and ``GET /healthz`` from a minimal FastAPI handler: ``await request.body()``, foldserve's own image decoder,
the same simplified (or original) network on the same runtime run inline on the event loop, one
``JSONResponse``. No batching, no thread hand-off, no limits, no metrics. It loads each checkpoint with
foldserve's own pipeline (simplified, verified, each variant on the fastest runtime among ``--runtimes``), so a
load test that puts both servers side by side measures only what foldserve's serving adds (or saves, where
batching pays). It is a yardstick for benchmarks, not a server to deploy: it bounds nothing.
"""

# no `from __future__ import annotations`: FastAPI must see the real Request class on the nested handler
import heapq
import math
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "build_reference_app", "serve_reference"]


def build_reference_app(store: Path, *, threads: int | None = None, runtimes: str = "auto") -> Any:
    """A FastAPI app serving every model of ``store`` (both variants), loaded before it returns."""
    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from app.config import Settings
    from app.serving.images import decode_images
    from app.serving.loading import load_model
    from app.store import discover_models

    torch.set_num_threads(threads or _default_threads())
    settings = Settings(model_store=store, runtimes=runtimes)
    networks: dict[tuple[str, str], Any] = {}
    manifests = {}
    for path in discover_models(store):
        loaded = load_model(path, settings, torch.device("cpu"))
        manifests[path.name] = loaded.manifest
        for variant, chosen in loaded.runtimes.items():
            networks[(path.name, variant)] = chosen.runtime
    if not networks:
        raise FileNotFoundError(f"no models in {store}")
    default = sorted(manifests)[0]
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.post("/predict")
    async def predict(request: Request, model: str = default, collapsed: bool = True, top_k: int = 3) -> JSONResponse:
        manifest = manifests[model]
        images = decode_images([await request.body()], manifest.input, max_pixels=2**31)
        with torch.inference_mode():
            logits = networks[(model, "collapsed" if collapsed else "original")](images)[0].tolist()
        return JSONResponse({"model": model, "predictions": [_rank(logits, manifest.labels, top_k)]})

    return app


def _rank(logits: list[float], labels: list[str], top_k: int) -> dict[str, Any]:
    peak = max(logits)
    exps = [math.exp(v - peak) for v in logits]
    total = sum(exps)
    best = heapq.nlargest(top_k, range(len(logits)), key=logits.__getitem__)
    return {"label": labels[best[0]], "index": best[0], "probability": exps[best[0]] / total}


def _default_threads() -> int:
    """foldserve's own default on the CPU: one intra-op thread fewer than the cores, at least one."""
    import os

    return max(1, len(os.sched_getaffinity(0)) - 1)


def serve_reference(store: Path, host: str, port: int, threads: int | None, runtimes: str = "auto") -> int:
    """Load ``store`` and serve it with uvicorn (uvloop, httptools, no access log) until stopped."""
    import uvicorn

    app = build_reference_app(store, threads=threads, runtimes=runtimes)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``python -m loadtest reference``."""
    parser = sub.add_parser("reference", help="serve the minimal reference handler (a yardstick, not a service)")
    parser.add_argument("--store", type=Path, default=Path("model_store"), help="model store (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8130)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: foldserve's, cores - 1)")
    parser.add_argument("--runtimes", default="auto", help="as FOLDSERVE_RUNTIMES (default %(default)s)")
    parser.set_defaults(
        func=lambda args: serve_reference(args.store, args.host, args.port, args.threads, args.runtimes)
    )
