"""The graph cache: whole entries or none, refused when damaged or tampered with, rebuilt, never trusted; the
runtime choice recorded beside a graph, reused only in the context it was timed in and only after verification."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from app.runtimes import GraphCache, GraphRefused, SelectionOptions, check_graph, export_onnx, select_runtime
from app.runtimes import select as selection
from app.runtimes.select import choice_context
from app.simplify import reference_outputs

CPU = torch.device("cpu")
SHAPE = (1, 2, 2)


def small(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def choose(  # type: ignore[no-untyped-def]
    module: nn.Module,
    cache: GraphCache,
    key: str = "k",
    candidates: tuple[str, ...] = ("onnxruntime",),
    threads: int = 1,
):
    inputs = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(0))
    options = SelectionOptions(
        candidates=candidates,
        device=CPU,
        threads=threads,
        tolerance=1e-4,
        max_batch_size=4,
        rounds=1,
        block_seconds=0.0,
        cache=cache,
    )
    return select_runtime(module, SHAPE, inputs, reference_outputs(module, inputs), options, cache_key=key)


def test_a_graph_is_exported_once_then_read_back(tmp_path: Path) -> None:
    cache = GraphCache(tmp_path / "cache")
    first = choose(small(0), cache)
    second = choose(small(0), cache)
    assert first.candidates["onnxruntime"].graph == "exported"
    assert second.candidates["onnxruntime"].graph == "cache"
    assert second.candidates["onnxruntime"].status == "served"
    meta = json.loads((tmp_path / "cache" / "k.json").read_text())
    assert meta["sha256"] == hashlib.sha256((tmp_path / "cache" / "k.onnx").read_bytes()).hexdigest()
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["k.choice.json", "k.json", "k.onnx"]  # no temporary left


def test_a_truncated_graph_is_refused_and_exported_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = GraphCache(tmp_path)
    choose(small(0), cache)
    whole = (tmp_path / "k.onnx").read_bytes()
    (tmp_path / "k.onnx").write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="app.runtimes.cache"):
        again = choose(small(0), cache)
    assert again.candidates["onnxruntime"].graph == "exported"
    assert again.candidates["onnxruntime"].status == "served"
    assert "refused: sha256" in caplog.text and "does not match the recorded" in caplog.text
    assert (tmp_path / "k.onnx").read_bytes() == whole


def test_a_graph_of_other_weights_with_a_matching_checksum_fails_verification_and_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = GraphCache(tmp_path)
    cache.write("k", export_onnx(small(1), SHAPE))  # a whole, well-formed entry: of another network
    with caplog.at_level(logging.WARNING):
        chosen = choose(small(0), cache)
    report = chosen.candidates["onnxruntime"]
    assert report.graph == "exported" and report.status == "served"
    assert report.errors is not None and report.errors["max_rel_error"] < 1e-6
    assert "on the cached graph misses the tolerance; exporting again" in caplog.text
    assert cache.read("k") == export_onnx(small(0), SHAPE)


def test_a_cache_that_cannot_be_written_costs_only_the_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="app.runtimes.cache"):
        chosen = choose(small(0), GraphCache(blocked / "cache"))
    assert chosen.candidates["onnxruntime"].status == "served"
    assert "not written" in caplog.text


def _with(graph: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    proto = onnx.load_model_from_string(graph)
    change(proto)
    return proto.SerializeToString()


def test_graphs_that_could_read_files_or_reach_code_are_refused() -> None:
    graph = export_onnx(small(0), SHAPE)
    check_graph(graph)

    def external(proto: onnx.ModelProto) -> None:
        tensor = proto.graph.initializer[0]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value="/etc/passwd")

    def custom(proto: onnx.ModelProto) -> None:
        proto.graph.node[0].domain = "com.example.native"

    def renamed(proto: onnx.ModelProto) -> None:
        proto.graph.output[0].name = "other"

    cases = {
        "initializers with external data": external,
        r"operators outside the standard ONNX domain \(com.example.native\)": custom,
        "inputs and outputs": renamed,
    }
    for message, change in cases.items():
        with pytest.raises(GraphRefused, match=message):
            check_graph(_with(graph, change))
    with pytest.raises(GraphRefused, match="not a readable ONNX model"):
        check_graph(graph[: len(graph) // 2])


def test_a_refused_graph_in_the_cache_is_deleted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = GraphCache(tmp_path)
    graph = export_onnx(small(0), SHAPE)
    bad = _with(graph, lambda proto: setattr(proto.graph.node[0], "domain", "com.example.native"))
    cache.write("k", bad)
    with caplog.at_level(logging.WARNING, logger="app.runtimes.cache"):
        assert cache.read("k") is None
    assert "operators outside the standard ONNX domain" in caplog.text
    assert not (tmp_path / "k.onnx").exists() and not (tmp_path / "k.json").exists()


BOTH = ("eager", "onnxruntime")


def _no_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the candidates were timed")

    monkeypatch.setattr(selection, "_choose", refuse)


def test_a_recorded_choice_is_built_and_verified_alone_and_not_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = GraphCache(tmp_path)
    first = choose(small(0), cache, candidates=BOTH)
    record = json.loads((tmp_path / "k.choice.json").read_text())
    assert record["choice"]["parts"] == first.parts and record["context"]["threads"] == 1
    _no_timing(monkeypatch)
    second = choose(small(0), cache, candidates=BOTH)
    assert second.parts == first.parts and second.max_batch_size == first.max_batch_size
    assert second.images_per_s == first.images_per_s
    for name, report in second.candidates.items():
        assert report.latency_s == first.candidates[name].latency_s
        if name in second.parts:
            assert report.status == "served"
            assert report.errors is not None and report.errors["max_rel_error"] < 1e-6  # verified again
        else:
            assert report.status == "not built" and report.errors is None
            assert report.reason == "the runtime choice timed at an earlier load of this graph was reused"
    batch = torch.randn(3, *SHAPE)
    torch.testing.assert_close(second.runtime(batch), small(0)(batch))


def test_a_choice_recorded_in_another_context_is_timed_again_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = GraphCache(tmp_path)
    choose(small(0), cache, candidates=BOTH, threads=2)
    timed = []
    real = selection._choose
    monkeypatch.setattr(selection, "_choose", lambda *args, **kwargs: timed.append(1) or real(*args, **kwargs))
    again = choose(small(0), cache, candidates=BOTH, threads=1)
    assert timed == [1]
    assert all(report.status != "not built" for report in again.candidates.values())
    record = json.loads((tmp_path / "k.choice.json").read_text())
    assert record["context"]["threads"] == 1 and record["choice"]["parts"] == again.parts


@pytest.mark.parametrize(
    "damage",
    [
        lambda record: "{ not json",
        lambda record: json.dumps({**record, "choice": [1]}),
        lambda record: json.dumps({**record, "choice": {**record["choice"], "parts": {"tensorrt": 1}}}),
        lambda record: json.dumps({**record, "choice": {**record["choice"], "max_batch_size": 10**6}}),
        lambda record: json.dumps({**record, "choice": {**record["choice"], "images_per_s": {"²": 1.0}}}),
    ],
    ids=["not JSON", "not an object", "an unknown runtime", "past the batch cap", "a size that is no number"],
)
def test_a_damaged_choice_is_refused_with_a_warning_and_timed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage
) -> None:  # type: ignore[no-untyped-def]
    cache = GraphCache(tmp_path)
    first = choose(small(0), cache, candidates=BOTH)
    path = tmp_path / "k.choice.json"
    path.write_text(damage(json.loads(path.read_text())))
    with caplog.at_level(logging.WARNING):
        again = choose(small(0), cache, candidates=BOTH)
    assert "runtime choice" in caplog.text and ("refused" in caplog.text or "not one this load" in caplog.text)
    assert all(report.status != "not built" for report in again.candidates.values())
    assert json.loads(path.read_text())["choice"]["parts"] == again.parts
    assert again.parts.keys() <= set(BOTH) and first.parts.keys() <= set(BOTH)


def test_a_recorded_runtime_that_fails_now_sends_the_load_back_to_timing_every_candidate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = GraphCache(tmp_path)
    choose(small(0), cache, candidates=BOTH)
    context = choice_context(
        SelectionOptions(candidates=BOTH, device=CPU, threads=1, tolerance=1e-4, max_batch_size=4, cache=cache)
    )
    choice = {"parts": {"onnxruntime": 1}, "max_batch_size": 1, "images_per_s": {"1": 1000.0}, "latency_s": {}}
    cache.write_choice("k", context, choice)

    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("the runtime's library broke")

    monkeypatch.setitem(selection.RUNTIMES, "onnxruntime", Broken)
    with caplog.at_level(logging.WARNING):
        chosen = choose(small(0), cache, candidates=BOTH)
    assert "the recorded runtime choice onnxruntime of k does not hold: onnxruntime failed" in caplog.text
    assert chosen.name == "eager" and chosen.candidates["onnxruntime"].status == "failed"
    assert chosen.candidates["eager"].latency_s  # timed
