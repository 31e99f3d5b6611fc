"""``python -m app serve``: argument parsing, settings overrides and the uvicorn call (replaced here)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app.__main__ import build_parser, main
from app.config import get_settings


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_serve_is_registered_with_host_and_port() -> None:
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "8101"])
    assert (args.command, args.host, args.port) == ("serve", "127.0.0.1", 8101)


def test_serve_runs_uvicorn_with_settings_and_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uvicorn_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("FOLDSERVE_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("FOLDSERVE_DEVICE", "cpu")
    monkeypatch.setenv("FOLDSERVE_HOST", "127.0.0.2")
    assert main(["serve", "--port", "8101"]) == 0
    (call,) = uvicorn_calls
    assert isinstance(call["app"], FastAPI)
    assert (call["host"], call["port"], call["log_level"]) == ("127.0.0.2", 8101, "info")
    assert call["app"].state.settings.model_store == tmp_path


def test_missing_store_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uvicorn_calls: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FOLDSERVE_MODEL_STORE", str(tmp_path / "nowhere"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model store") and err.count("\n") == 1
    assert uvicorn_calls == []


def test_bad_port_is_refused(uvicorn_calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535, got 70000" in capsys.readouterr().err


def test_workers_refuse_a_grpc_port_that_another_server_holds(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uvicorn_calls: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Workers bind gRPC with SO_REUSEPORT, which would share the port with that server unnoticed."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as grpcio binds by default
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("FOLDSERVE_MODEL_STORE", str(tmp_path))
        monkeypatch.setenv("FOLDSERVE_WORKERS", "2")
        monkeypatch.setenv("FOLDSERVE_GRPC_PORT", str(port))
        assert main(["serve", "--port", "8101"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot serve gRPC on 127.0.0.1:{port} (FOLDSERVE_GRPC_PORT): Address already in use\n"
