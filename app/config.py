"""Settings for foldserve, read from ``FOLDSERVE_*`` environment variables.

This module is the only place that reads the environment. Everything else receives a :class:`Settings`
(``create_app(settings)``) or calls :func:`get_settings`, which is cached so that tests can override it
with ``get_settings.cache_clear()`` or by passing their own ``Settings``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RUNTIME_NAMES", "Settings", "get_settings", "settings_markdown"]

RUNTIME_NAMES = ("eager", "onnxruntime", "openvino")
"""The runtimes ``FOLDSERVE_RUNTIMES`` may name (``app.runtimes.RUNTIMES``, which a test keeps equal)."""


class Settings(BaseSettings):
    """Every knob of the service; the field name upper-cased with ``FOLDSERVE_`` in front is its variable."""

    model_config = SettingsConfigDict(env_prefix="FOLDSERVE_", extra="ignore", frozen=True)

    # Models
    model_store: Path = Field(default=Path("model_store"), description="folder with one sub-folder per checkpoint")
    default_model: str | None = Field(
        default=None, description="model used when /predict names none; else first by name"
    )
    model_control: Literal["explicit", "poll"] = Field(
        default="explicit",
        description="explicit: models change only through the repository API; poll: every worker also follows "
        "the store, loading new and changed folders and unloading removed ones",
    )
    model_poll_s: float = Field(default=5.0, gt=0, description="with model_control=poll, seconds between looks")
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token of the repository's load and unload; None: they are off (403)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when available, else CPU")
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads per worker; None: on the CPU one fewer than the worker's share of the "
        "usable cores, at least 1, so that the event loop and image decoding keep a core",
    )
    malloc_arenas: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas per process (mallopt M_ARENA_MAX); 0: glibc's own limit (8 per core), "
        "under which every reload's threads leave memory in arenas of their own",
    )
    # 4 GiB: the shipped models are estimated at about 195 MiB (128 of it the runtime's first-load allowance), an
    # ImageNet ResNet-152 (1000 classes, 3x224x224) at 1.7 GiB with the default samples, on the CPU (app/budget.py);
    # the 9 G-parameter manifest of issue 10 at 609 GiB. Far enough under a typical host to leave room for others.
    max_model_bytes: int = Field(
        default=4 * 2**30, ge=1, description="estimated memory one model may take to load; beyond: refused unbuilt"
    )
    allow_symlinks_out_of_store: bool = Field(
        default=False, description="serve model folders and files that are symlinks to outside the model store"
    )
    max_affine_bytes: int = Field(
        default=256 * 2**20, ge=1, description="largest dense affine map a collapse may build"
    )
    verification_tolerance: float = Field(
        default=1e-4, gt=0, description="largest error, relative to the output scale, a served simplification may show"
    )
    verification_samples: int = Field(
        default=16, ge=0, description="pixel-range images verified on when none are shipped"
    )
    warmup_runs: int = Field(default=3, ge=0, description="forward passes per variant and batch size before serving")
    runtimes: str = Field(
        default="auto",
        description="the runtimes each variant is built, verified and timed on at load, the fastest that passes "
        "serving: auto (every one installed) or a comma-separated list of eager, onnxruntime, openvino",
    )
    runtime_cache: Path | None = Field(
        default=Path("~/.cache/foldserve/runtimes"),
        validate_default=True,
        description="folder of exported ONNX graphs, and the runtime chosen for each, kept between starts "
        "(verified again when read); empty: no cache",
    )
    speedup_rounds: int = Field(
        default=7, ge=1, description="interleaved timing rounds at load, of the runtime candidates and of both variants"
    )
    speedup_block_seconds: float = Field(default=0.01, ge=0, description="least time of one timed block of calls")

    # HTTP
    host: str = Field(default="127.0.0.1", description="address that `python -m app serve` listens on")
    port: int = Field(default=8000, ge=1, le=65535, description="port that `python -m app serve` listens on")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(
        default=False, description="one uvicorn log line per request; off by default: the metrics count requests"
    )
    grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="port of the Open Inference Protocol's gRPC service, on the same host as HTTP; 0: no gRPC",
    )
    ui: bool = Field(
        default=True,
        description="serve the comparison page at / and /ui/ (read-only: it classifies through /predict) and its "
        "live latency at /ui/stats",
    )
    strict_readiness: bool = Field(
        default=False,
        description="keep /readyz and /v2/health/ready unready while any model has failed to load, not only while "
        "one is loading",
    )

    max_headers: int = Field(default=100, ge=1, description="header fields of one request; beyond: 431")
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="bytes of the request line and headers together; beyond: 431"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="time a request's headers may take to arrive; beyond: 408 and the connection closes",
    )
    max_requests_per_connection: int = Field(
        default=100,
        ge=0,
        description="HTTP/1.1: the answer to a connection's this-many-th request says Connection: close, so that "
        "clients reconnect and spread over the workers (nginx's keepalive_requests); 0: no limit",
    )
    grpc_max_connection_age_s: float = Field(
        default=30.0,
        ge=0,
        description="gRPC: a connection this old is sent GOAWAY, so that clients reconnect and spread over the "
        "workers; its calls in flight get FOLDSERVE_REQUEST_TIMEOUT_S to finish; 0: no limit",
    )

    # Batching
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="images per forward pass, at most")
    batch_size: Literal["measured", "max"] = Field(
        default="measured",
        description="measured: each variant's largest batch is the smallest within 5% of the best images/s measured "
        "at load, at most max_batch_size; max: every variant batches up to max_batch_size",
    )
    # 0: a batch takes what queued while the previous forward pass ran. Measured on the shipped-size models
    # (docs/operations.md): waiting 2 ms doubled the p50 at concurrency 1 and gained nothing at concurrency 16.
    max_wait_ms: float = Field(default=0.0, ge=0, le=10_000, description="how long a batch waits for more images")
    max_queue_size: int = Field(default=256, ge=1, description="images waiting per model and variant; beyond: 503")
    request_timeout_s: float = Field(default=10.0, gt=0, description="deadline for one /predict; beyond: 504")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with every 503")

    # Where work runs
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes on one port, each loading the whole store; torch threads are divided "
        "between them",
    )
    drain_s: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, how long requests in flight may take to finish before the process exits",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="with several workers, the folder where they keep their metrics (emptied at start); None: a "
        "temporary folder",
    )
    inline_max_forward_us: float = Field(
        default=250.0,
        ge=0,
        description="a variant whose batch-1 forward pass measured at load takes at most this many µs runs on "
        "the event loop when nothing is queued for it; 0: every variant is batched",
    )
    inline_decode_max_pixels: int = Field(
        default=256 * 256,
        ge=0,
        description="a request with at most this many pixels in all is decoded on the event loop; larger ones "
        "in the decode pool",
    )
    decode_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="threads of the decode pool per worker; None: half the worker's share of the usable cores, "
        "at least 1",
    )

    # Limits on what a client may send
    max_body_bytes: int = Field(default=10 * 2**20, ge=1, description="request body size; beyond: 413")
    max_images_per_request: int = Field(default=16, ge=1, description="images in one /predict; beyond: 413")
    max_image_pixels: int = Field(default=4096 * 4096, ge=1, description="width x height of one image; beyond: 413")
    max_request_pixels: int = Field(
        default=2 * 4096 * 4096, ge=1, description="pixels of all the images of one request together; beyond: 413"
    )
    max_aspect_ratio: float = Field(
        default=64.0, ge=1, description="longer side over shorter side of one image; beyond: 400"
    )
    min_upload_bytes_per_s: int = Field(
        default=16 * 1024,
        ge=0,
        description="after its first second, a request body must arrive at least this fast; slower: 408",
    )
    max_inflight_body_bytes: int = Field(
        default=128 * 2**20,
        ge=1,
        description="request-body bytes held by the process at once (read, not yet decoded); beyond: 503",
    )

    @field_validator("runtimes")
    @classmethod
    def _known_runtimes(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in (*RUNTIME_NAMES, "auto")]
        if unknown or not names or ("auto" in names and len(names) > 1):
            raise ValueError(
                f"runtimes must be 'auto' or a comma-separated list of {', '.join(RUNTIME_NAMES)}, got {value!r}"
            )
        return ",".join(names)

    @field_validator("runtime_cache", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if value == "":
            return None
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @property
    def runtime_candidates(self) -> tuple[str, ...]:
        """The runtimes to try, in :data:`RUNTIME_NAMES`' order."""
        named = set(self.runtimes.split(","))
        return tuple(name for name in RUNTIME_NAMES if "auto" in named or name in named)

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        if self.max_queue_size < self.max_images_per_request:
            raise ValueError(
                f"max_queue_size ({self.max_queue_size}) must be >= max_images_per_request "
                f"({self.max_images_per_request}), or no full request could ever be queued"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()


def settings_markdown() -> str:
    """docs/settings.md: every setting's variable, default and description, from :class:`Settings` itself."""
    lines = [
        "# Settings",
        "",
        "Every setting is an environment variable read by `app/config.py` (pydantic-settings, prefix `FOLDSERVE_`);",
        "sizes are in bytes, times in the unit their name says. This page is generated from `Settings`:",
        "`python -m app settings --markdown > docs/settings.md` writes it again, and a test keeps it equal.",
        "",
        "| variable | default | what |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        what = field.description or ""
        choices = getattr(field.annotation, "__args__", ()) if "Literal" in str(field.annotation) else ()
        if choices:
            what = "; ".join(filter(None, [what, "one of " + ", ".join(f"`{c}`" for c in choices)]))
        escaped = what.replace("|", "\\|")
        lines.append(f"| `FOLDSERVE_{name.upper()}` | `{field.default}` | {escaped} |")
    return "\n".join(lines) + "\n"
