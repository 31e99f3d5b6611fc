"""Settings: defaults, FOLDSERVE_* overrides, validation and the cached accessor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings, get_settings, settings_markdown


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("FOLDSERVE_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults() -> None:
    settings = Settings()
    assert settings.model_store == Path("model_store")
    assert settings.default_model is None
    assert settings.device == "auto"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.max_batch_size, settings.max_wait_ms, settings.max_queue_size) == (32, 0.0, 256)
    assert settings.request_timeout_s == 10.0
    assert settings.max_body_bytes == 10 * 2**20
    assert settings.max_images_per_request == 16
    assert settings.max_image_pixels == 4096 * 4096
    assert settings.verification_tolerance == 1e-4
    assert settings.max_model_bytes == 4 * 2**30
    assert settings.allow_symlinks_out_of_store is False


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOLDSERVE_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("FOLDSERVE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("FOLDSERVE_DEVICE", "cpu")
    monkeypatch.setenv("FOLDSERVE_DEFAULT_MODEL", "linear")
    monkeypatch.setenv("FOLDSERVE_MAX_MODEL_BYTES", "1048576")
    monkeypatch.setenv("FOLDSERVE_ALLOW_SYMLINKS_OUT_OF_STORE", "true")
    settings = Settings()
    assert settings.model_store == tmp_path
    assert settings.max_batch_size == 7
    assert settings.device == "cpu"
    assert settings.default_model == "linear"
    assert (settings.max_model_bytes, settings.allow_symlinks_out_of_store) == (2**20, True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FOLDSERVE_MAX_BATCH_SIZE", "0"),
        ("FOLDSERVE_MAX_WAIT_MS", "-1"),
        ("FOLDSERVE_DEVICE", "tpu"),
        ("FOLDSERVE_PORT", "70000"),
        ("FOLDSERVE_REQUEST_TIMEOUT_S", "0"),
        ("FOLDSERVE_MAX_MODEL_BYTES", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert variable.removeprefix("FOLDSERVE_").lower() in str(info.value)


def test_queue_must_hold_a_whole_request() -> None:
    with pytest.raises(ValidationError, match="max_queue_size"):
        Settings(max_queue_size=4, max_images_per_request=8)


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLDSERVE_PORT", "8123")
    first = get_settings()
    monkeypatch.setenv("FOLDSERVE_PORT", "8124")
    assert get_settings() is first
    assert first.port == 8123
    get_settings.cache_clear()
    assert get_settings().port == 8124


SETTINGS_DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_settings_doc_is_the_generators_output() -> None:
    assert SETTINGS_DOC.read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is stale: python -m app settings --markdown > docs/settings.md"
    )


def test_settings_doc_lists_every_setting_with_its_default() -> None:
    doc = SETTINGS_DOC.read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`FOLDSERVE_"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    expected = {f"FOLDSERVE_{name.upper()}": str(field.default) for name, field in Settings.model_fields.items()}
    assert rows == expected


def test_runtimes_name_known_runtimes_or_auto() -> None:
    assert Settings().runtime_candidates == ("eager", "onnxruntime", "openvino")
    assert Settings(runtimes="openvino, eager").runtime_candidates == ("eager", "openvino")
    assert Settings(runtimes="eager").runtimes == "eager"
    for bad in ("tensorflow", "", "auto,eager", "eager,,tvm"):
        with pytest.raises(ValueError, match="runtimes must be 'auto' or a comma-separated list of eager, onnxruntime"):
            Settings(runtimes=bad)


def test_an_empty_runtime_cache_turns_it_off_and_a_home_path_is_expanded() -> None:
    assert Settings(runtime_cache="").runtime_cache is None
    assert Settings(runtime_cache="~/graphs").runtime_cache == Path.home() / "graphs"


def test_settings_command_prints_the_settings_doc(capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main

    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_markdown()
