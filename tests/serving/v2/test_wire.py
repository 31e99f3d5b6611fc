"""The Open Inference Protocol against a real ``python -m app serve``, with Triton's own clients over real sockets.

One server, started here on free ports with a tiny store (one linear model, 12x12 gray, 5 classes), serves REST
and gRPC. tritonclient.http runs in this process; tritonclient.grpc runs in a subprocess, because its stubs and
ours define the same ``inference.*`` messages (see test_grpc_wire.py). Every answer is compared with a reference
computed here from the checkpoint, and with what ``/predict`` says about the same images.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from app.serving.images import decode_image
from app.store import load_checkpoint
from tests.server import Server, free_port
from tests.serving.conftest import LABELS, MEAN, SIZE, STD, digit_png, write_checkpoint

pytestmark = pytest.mark.slow

MODEL = "linear"
MAX_IMAGES = 4
MAX_BODY = 64 * 1024
SERVER_ENV = {
    "FOLDSERVE_DEVICE": "cpu",
    "FOLDSERVE_TORCH_THREADS": "1",
    "FOLDSERVE_WARMUP_RUNS": "1",
    "FOLDSERVE_SPEEDUP_ROUNDS": "2",
    "FOLDSERVE_SPEEDUP_BLOCK_SECONDS": "0",
    "FOLDSERVE_VERIFICATION_SAMPLES": "4",
    "FOLDSERVE_MAX_BATCH_SIZE": "8",
    "FOLDSERVE_MAX_IMAGES_PER_REQUEST": str(MAX_IMAGES),
    "FOLDSERVE_MAX_BODY_BYTES": str(MAX_BODY),
    "FOLDSERVE_LOG_LEVEL": "warning",
}
IMAGES = [digit_png(seed) for seed in range(3)]


class Served:
    """The running server: its URLs, the checkpoint's reference network and the images' tensors."""

    def __init__(self, process: Server, grpc_port: int, store: Path) -> None:
        self.url = process.url
        self.http = process.url.removeprefix("http://")
        self.grpc = f"127.0.0.1:{grpc_port}"
        manifest, self.network = load_checkpoint(store / MODEL)
        self.images = torch.stack([decode_image(png, manifest.input, max_pixels=10**6) for png in IMAGES])

    def reference(self) -> torch.Tensor:
        """The original network's logits for :data:`IMAGES`, computed here."""
        with torch.no_grad():
            return self.network(self.images)

    def counted(self, protocol: str, variant: str, status: str) -> float:
        labels = {"model": MODEL, "variant": variant, "protocol": protocol, "status": status}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "foldserve_requests_total" and sample.labels == labels:
                    return sample.value
        raise AssertionError(f"no series foldserve_requests_total{labels}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("v2-wire")
    write_checkpoint(root / "store", MODEL, kind="linear")
    grpc_port = free_port()
    env = {**SERVER_ENV, "FOLDSERVE_GRPC_PORT": str(grpc_port)}
    with Server(root / "store", root / "server.log", env, ready_timeout=120) as process:
        yield Served(process, grpc_port, root / "store")


@pytest.fixture(scope="module")
def client(server: Served) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.http)
    yield client
    client.close()


def fp32_input(array: np.ndarray, *, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def image_input(blobs: list[bytes], *, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image", [len(blobs)], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=np.object_), binary_data=binary)
    return tensor


def predict_probabilities(server: Served, png: bytes, collapsed: bool) -> tuple[list[float], str]:
    """What ``/predict`` says about ``png``: every class's probability, by index, and the variant."""
    response = httpx.post(
        f"{server.url}/predict?model={MODEL}&collapsed={str(collapsed).lower()}&top_k={len(LABELS)}",
        content=png,
        headers={"content-type": "image/png"},
        timeout=30,
    )
    body = response.raise_for_status().json()
    (prediction,) = body["predictions"]
    scores = {score["index"]: score["probability"] for score in prediction["top_k"]}
    return [scores[i] for i in range(len(LABELS))], body["variant"]


def assert_logits_close(actual: Any, expected: torch.Tensor) -> None:
    """Equal within 1e-4 of the output scale (the verification tolerance the collapse was held to)."""
    scale = expected.abs().max().item()
    actual = torch.as_tensor(np.asarray(actual, dtype=np.float32))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * scale)


def test_health_and_metadata(server: Served, client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, model_version="1")
    assert not client.is_model_ready("nope") and not client.is_model_ready(MODEL, model_version="2")
    assert client.get_server_metadata() == {
        "name": "foldserve",
        "version": "0.1.0",
        "extensions": [
            "binary_tensor_data",
            "classification",
            "model_configuration",
            "model_repository",
            "parameters",
        ],
    }
    metadata = client.get_model_metadata(MODEL)
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 1, SIZE, SIZE]},
        {"name": "image", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert metadata["outputs"] == [
        {"name": name, "datatype": "FP32", "shape": [-1, len(LABELS)]} for name in ("logits", "probabilities")
    ]
    assert metadata["parameters"]["mean"] == [MEAN] and metadata["parameters"]["std"] == [STD]
    assert client.get_model_metadata(MODEL, model_version="1") == metadata
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == MAX_IMAGES
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("input", "TYPE_FP32", [1, SIZE, SIZE]),
        ("image", "TYPE_STRING", [1]),
    ]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [("logits", [5]), ("probabilities", [5])]
    assert "dynamic_batching" not in config  # the collapsed tiny model runs inline when nothing waits
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": [MODEL], "failed": {}}


@pytest.mark.parametrize("collapsed", [True, False], ids=["collapsed", "original"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_infer_matches_the_network(
    server: Served, client: httpclient.InferenceServerClient, collapsed: bool, binary: bool
) -> None:
    x = server.images.numpy()
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("logits", "probabilities")]
    result = client.infer(
        MODEL, [fp32_input(x, binary=binary)], outputs=outputs, parameters={"collapsed": collapsed}, request_id="7"
    )
    response = result.get_response()
    assert response["parameters"] == {"variant": "collapsed" if collapsed else "original"}
    assert (response["model_name"], response["model_version"], response["id"]) == (MODEL, "1", "7")
    reference = server.reference()
    assert_logits_close(result.as_numpy("logits"), reference)
    expected = torch.softmax(reference.double(), dim=1).float()
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("probabilities")), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("collapsed", [True, False], ids=["collapsed", "original"])
def test_images_give_the_answer_of_predict(
    server: Served, client: httpclient.InferenceServerClient, collapsed: bool
) -> None:
    result = client.infer(MODEL, [image_input(IMAGES)], parameters={"collapsed": collapsed})
    assert result.get_response()["parameters"]["variant"] == ("collapsed" if collapsed else "original")
    assert_logits_close(result.as_numpy("logits"), server.reference())
    for row, png in enumerate(IMAGES):
        probabilities, variant = predict_probabilities(server, png, collapsed)
        assert variant == ("collapsed" if collapsed else "original")
        assert int(np.argmax(result.as_numpy("logits")[row])) == int(np.argmax(probabilities))
        np.testing.assert_allclose(result.as_numpy("probabilities")[row], probabilities, rtol=0, atol=1e-4)


def test_images_may_come_as_n_by_1(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[IMAGES[0]]], dtype=np.object_), binary_data=True)
    result = client.infer(MODEL, [tensor])  # shape [N, 1] as the metadata declares it
    assert result.as_numpy("logits").shape == (1, len(LABELS))


def test_classification_extension(server: Served, client: httpclient.InferenceServerClient) -> None:
    outputs = [httpclient.InferRequestedOutput("probabilities", class_count=2)]
    result = client.infer(MODEL, [image_input(IMAGES[:2])], outputs=outputs)
    probabilities = torch.softmax(server.reference()[:2].double(), dim=1)
    for row, strings in enumerate(result.as_numpy("probabilities")):
        top = torch.argsort(probabilities[row], descending=True)[:2].tolist()
        decoded = [s.decode().split(":") for s in strings]
        assert [(int(index), label) for _, index, label in decoded] == [(k, LABELS[k]) for k in top]
        assert [float(value) for value, _, _ in decoded] == pytest.approx(
            [probabilities[row, k].item() for k in top], abs=1e-5
        )


def raw_body(document: dict[str, Any], binary: bytes = b"") -> tuple[bytes, dict[str, str]]:
    header = json.dumps(document).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))} if binary else {}
    return header + binary, headers


def fp32_document(shape: list[int], **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", **extra}]}


ZEROS = np.zeros((1, 1, SIZE, SIZE), dtype="<f4").tobytes()
ONE_IMAGE = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4 + 9}}
BAD_REQUESTS: list[tuple[str, str, tuple[bytes, dict[str, str]], int, str]] = [
    ("unknown-model", "/v2/models/nope/infer", raw_body({"inputs": []}), 404, "unknown model 'nope'"),
    ("unknown-version", f"/v2/models/{MODEL}/versions/2/infer", raw_body({"inputs": []}), 404, "no version '2'"),
    (
        "wrong-datatype",
        f"/v2/models/{MODEL}/infer",
        raw_body({"inputs": [{"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP64", "data": [0] * 144}]}),
        400,
        "input 'input' must be FP32, got FP64",
    ),
    (
        "wrong-shape",
        f"/v2/models/{MODEL}/infer",
        raw_body(fp32_document([1, 1, 5, 5], data=[0.0] * 25)),
        400,
        f"must have shape [N, 1, {SIZE}, {SIZE}]",
    ),
    (
        "size-not-matching-shape",
        f"/v2/models/{MODEL}/infer",
        raw_body(fp32_document([1, 1, SIZE, SIZE], parameters={"binary_data_size": 8}), ZEROS[:8]),
        400,
        "needs 576 bytes",
    ),
    (
        "nan",
        f"/v2/models/{MODEL}/infer",
        raw_body(
            fp32_document([1, 1, SIZE, SIZE], parameters={"binary_data_size": len(ZEROS)}),
            struct.pack("<f", float("nan")) + ZEROS[4:],
        ),
        400,
        "tensor data must be finite",
    ),
    (
        "infinity-in-json",
        f"/v2/models/{MODEL}/infer",
        (
            b'{"inputs":[{"name":"input","shape":[1,1,12,12],"datatype":"FP32","data":[Infinity'
            + b",0" * 143
            + b"]}]}",
            {},
        ),
        400,
        "tensor data must be finite",
    ),
    (
        "over-the-batch-limit",
        f"/v2/models/{MODEL}/infer",
        raw_body(
            {"inputs": [{"name": "image", "shape": [MAX_IMAGES + 1], "datatype": "BYTES", "data": list("abcde")}]}
        ),
        413,
        f"a request may carry at most {MAX_IMAGES}",
    ),
    (
        "bad-binary-header",
        f"/v2/models/{MODEL}/infer",
        (b"{}", {"Inference-Header-Content-Length": "-3"}),
        400,
        "Inference-Header-Content-Length must be a whole number of bytes, got '-3'",
    ),
    (
        "binary-header-past-the-body",
        f"/v2/models/{MODEL}/infer",
        (b"{}", {"Inference-Header-Content-Length": "99"}),
        400,
        "must be between 1 and the body's 2 bytes, got 99",
    ),
    (
        "body-over-the-limit",
        f"/v2/models/{MODEL}/infer",
        (b" " * (MAX_BODY + 1), {}),
        413,
        f"larger than the limit of {MAX_BODY} bytes",
    ),
    (
        "unknown-input",
        f"/v2/models/{MODEL}/infer",
        raw_body({"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0]}]}),
        400,
        "unknown input 'pixels'",
    ),
    (
        "two-inputs",
        f"/v2/models/{MODEL}/infer",
        raw_body(
            {
                "inputs": [
                    {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                    {"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP32", "data": [0.0] * 144},
                ]
            }
        ),
        400,
        "a request carries one input",
    ),
    (
        "unknown-output",
        f"/v2/models/{MODEL}/infer",
        raw_body({**fp32_document([1, 1, SIZE, SIZE], data=[0.0] * 144), "outputs": [{"name": "features"}]}),
        400,
        "unknown output 'features'",
    ),
    (
        "collapsed-not-a-boolean",
        f"/v2/models/{MODEL}/infer",
        raw_body({**fp32_document([1, 1, SIZE, SIZE], data=[0.0] * 144), "parameters": {"collapsed": "no"}}),
        400,
        "request parameter 'collapsed' must be a boolean",
    ),
    (
        "not-an-image",
        f"/v2/models/{MODEL}/infer",
        raw_body({"inputs": [ONE_IMAGE]}, struct.pack("<I", 9) + b"not a png"),
        400,
        "not an image Pillow can read",
    ),
    ("not-json", f"/v2/models/{MODEL}/infer", (b"{inputs", {}), 400, "the request is not valid JSON"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_their_4xx_in_the_protocols_shape(
    server: Served, path: str, body: tuple[bytes, dict[str, str]], status: int, message: str
) -> None:
    content, headers = body
    response = httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()
    assert list(error) == ["error"] and isinstance(error["error"], str)
    assert message in error["error"], error["error"]


def test_every_rest_request_is_counted_under_its_protocol(
    server: Served, client: httpclient.InferenceServerClient
) -> None:
    before = {s: server.counted("v2-rest", "original", s) for s in ("200", "400")}
    client.infer(MODEL, [fp32_input(server.images.numpy(), binary=True)], parameters={"collapsed": False})
    with pytest.raises(InferenceServerException, match="must be FP32"):
        bad = httpclient.InferInput("input", [1, 1, SIZE, SIZE], "FP64")
        bad.set_data_from_numpy(np.zeros((1, 1, SIZE, SIZE)), binary_data=True)
        client.infer(MODEL, [bad], parameters={"collapsed": False})
    assert server.counted("v2-rest", "original", "200") == before["200"] + 1
    assert server.counted("v2-rest", "original", "400") == before["400"] + 1


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, model, inputs_path = sys.argv[1:4]
given = json.load(open(inputs_path))
x = np.array(given["x"], dtype=np.float32)
images = [bytes.fromhex(h) for h in given["images"]]
client = grpcclient.InferenceServerClient(url)
answers = {}

def error(call):
    try:
        call()
    except InferenceServerException as exc:
        return [exc.status(), exc.message()]
    return None

def tensor(name, array, datatype, shape=None):
    item = grpcclient.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    if shape is not None:
        item.set_shape(shape)
    return item

fp32 = tensor("input", x, "FP32")
blobs = tensor("image", np.array(images, dtype=np.object_), "BYTES")
answers["live"] = client.is_server_live()
answers["ready"] = client.is_server_ready()
answers["model_ready"] = client.is_model_ready(model)
answers["unknown_ready"] = error(lambda: client.is_model_ready("nope"))
answers["server"] = client.get_server_metadata(as_json=True)
answers["model"] = client.get_model_metadata(model, as_json=True)
answers["unknown_metadata"] = error(lambda: client.get_model_metadata("nope"))
answers["config"] = client.get_model_config(model, as_json=True)["config"]
answers["versioned_config"] = client.get_model_config(model, model_version="1", as_json=True)["config"]
answers["unknown_config"] = error(lambda: client.get_model_config("nope"))
for collapsed in (True, False):
    key = "collapsed" if collapsed else "original"
    result = client.infer(model, [fp32], parameters={"collapsed": collapsed}, request_id="g1")
    answers[f"fp32_{key}"] = {
        "logits": result.as_numpy("logits").tolist(),
        "probabilities": result.as_numpy("probabilities").tolist(),
        "variant": result.get_response().parameters["variant"].string_param,
        "id": result.get_response().id,
    }
    result = client.infer(model, [blobs], parameters={"collapsed": collapsed})
    answers[f"images_{key}"] = result.as_numpy("logits").tolist()
outputs = [grpcclient.InferRequestedOutput("probabilities", class_count=2)]
classes = client.infer(model, [blobs], outputs=outputs).as_numpy("probabilities")
answers["classes"] = [[c.decode() for c in row] for row in classes]

bad = {}
bad["unknown_model"] = error(lambda: client.infer("nope", [fp32]))
bad["unknown_version"] = error(lambda: client.infer(model, [fp32], model_version="2"))
bad["wrong_datatype"] = error(lambda: client.infer(model, [tensor("input", x.astype(np.float64), "FP64")]))
bad["wrong_shape"] = error(lambda: client.infer(model, [tensor("input", x[:, :, :5, :5].copy(), "FP32")]))
bad["size_not_matching_shape"] = error(lambda: client.infer(model, [tensor("input", x, "FP32", [1, 1, 12, 12])]))
nan = x.copy()
nan[0, 0, 0, 0] = np.nan
bad["nan"] = error(lambda: client.infer(model, [tensor("input", nan, "FP32")]))
many = np.array(images * 2, dtype=np.object_)
bad["over_the_batch_limit"] = error(lambda: client.infer(model, [tensor("image", many, "BYTES")]))
garbage = np.array([b"garbage"], dtype=np.object_)
bad["not_an_image"] = error(lambda: client.infer(model, [tensor("image", garbage, "BYTES")]))
huge = np.array([b"x" * (int(given["max_body"]) + 1)], dtype=np.object_)
bad["message_over_the_limit"] = error(lambda: client.infer(model, [tensor("image", huge, "BYTES")]))
bad["collapsed_not_a_boolean"] = error(lambda: client.infer(model, [fp32], parameters={"collapsed": "no"}))
answers["bad"] = bad
answers["after_bad"] = client.infer(model, [fp32]).as_numpy("logits").tolist()
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def grpc_answers(server: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What tritonclient.grpc, in another process, got from the server; and the counters before and after."""
    given = tmp_path_factory.mktemp("grpc-client") / "inputs.json"
    images = [png.hex() for png in IMAGES]
    given.write_text(json.dumps({"x": server.images.tolist(), "images": images, "max_body": MAX_BODY}))
    before = server.counted("v2-grpc", "collapsed", "200")
    result = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, server.grpc, MODEL, str(given)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: dict[str, Any] = json.loads(result.stdout)
    answers["counted_ok_collapsed"] = server.counted("v2-grpc", "collapsed", "200") - before
    return answers


def test_grpc_health_and_metadata(grpc_answers: dict[str, Any]) -> None:
    assert grpc_answers["live"] is True and grpc_answers["ready"] is True and grpc_answers["model_ready"] is True
    assert grpc_answers["unknown_ready"] == ["StatusCode.NOT_FOUND", f"unknown model 'nope'; known models: {MODEL}"]
    assert grpc_answers["unknown_metadata"][0] == "StatusCode.NOT_FOUND"
    assert grpc_answers["server"]["extensions"] == [
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "model_repository",
        "parameters",
    ]
    model = grpc_answers["model"]
    assert (model["name"], model["versions"], model["platform"]) == (MODEL, ["1"], "pytorch_safetensors")
    assert model["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": ["-1", "1", "12", "12"]}


def test_grpc_model_config_is_the_rest_one(
    client: httpclient.InferenceServerClient, grpc_answers: dict[str, Any]
) -> None:
    """Triton's ModelConfig RPC, read by tritonclient.grpc with Triton's own schema: what REST's config says."""
    rest = client.get_model_config(MODEL)
    config = grpc_answers["config"]
    assert grpc_answers["versioned_config"] == config
    assert (config["name"], config["platform"], config["backend"]) == (MODEL, rest["platform"], rest["backend"])
    assert config["max_batch_size"] == rest["max_batch_size"] == MAX_IMAGES
    assert config["input"] == [
        {"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": ["1", str(SIZE), str(SIZE)]},
        {"name": "image", "data_type": "TYPE_STRING", "dims": ["1"], "optional": True},  # JSON leaves defaults out
    ]
    assert config["output"] == [
        {"name": n, "data_type": "TYPE_FP32", "dims": ["5"]} for n in ("logits", "probabilities")
    ]
    assert config["parameters"] == rest["parameters"]
    assert "dynamic_batching" not in config and "dynamic_batching" not in rest
    assert grpc_answers["unknown_config"] == ["StatusCode.NOT_FOUND", f"unknown model 'nope'; known models: {MODEL}"]


def test_grpc_infer_agrees_with_rest_predict_and_the_network(
    server: Served, client: httpclient.InferenceServerClient, grpc_answers: dict[str, Any]
) -> None:
    reference = server.reference()
    for collapsed in (True, False):
        key = "collapsed" if collapsed else "original"
        answer = grpc_answers[f"fp32_{key}"]
        assert (answer["variant"], answer["id"]) == (key, "g1")
        assert_logits_close(answer["logits"], reference)
        assert_logits_close(grpc_answers[f"images_{key}"], reference)
        rest = client.infer(MODEL, [image_input(IMAGES)], parameters={"collapsed": collapsed}).as_numpy("logits")
        assert_logits_close(grpc_answers[f"images_{key}"], torch.from_numpy(rest))
        for row, png in enumerate(IMAGES):
            probabilities, _ = predict_probabilities(server, png, collapsed)
            assert int(np.argmax(grpc_answers[f"images_{key}"][row])) == int(np.argmax(probabilities))
            np.testing.assert_allclose(answer["probabilities"][row], probabilities, rtol=0, atol=1e-4)
    top = torch.softmax(reference.double(), dim=1).argsort(dim=1, descending=True)[:, :2]
    assert [[int(c.split(":")[1]) for c in row] for row in grpc_answers["classes"]] == top.tolist()
    # fp32 and images, collapsed; classification; the request after the bad ones
    assert grpc_answers["counted_ok_collapsed"] == 4


GRPC_ERRORS = {
    "unknown_model": ("NOT_FOUND", "unknown model 'nope'"),
    "unknown_version": ("NOT_FOUND", "no version '2'"),
    "wrong_datatype": ("INVALID_ARGUMENT", "input 'input' must be FP32, got FP64"),
    "wrong_shape": ("INVALID_ARGUMENT", f"must have shape [N, 1, {SIZE}, {SIZE}]"),
    "size_not_matching_shape": ("INVALID_ARGUMENT", "needs 576 bytes"),
    "nan": ("INVALID_ARGUMENT", "tensor data must be finite"),
    "over_the_batch_limit": ("RESOURCE_EXHAUSTED", f"a request may carry at most {MAX_IMAGES}"),
    "not_an_image": ("INVALID_ARGUMENT", "not an image Pillow can read"),
    "message_over_the_limit": ("RESOURCE_EXHAUSTED", f"vs. {MAX_BODY})"),
    "collapsed_not_a_boolean": ("INVALID_ARGUMENT", "request parameter 'collapsed' must be a boolean"),
}


@pytest.mark.parametrize("case", list(GRPC_ERRORS))
def test_grpc_bad_requests_get_their_status_code(server: Served, grpc_answers: dict[str, Any], case: str) -> None:
    code, message = GRPC_ERRORS[case]
    status, text = grpc_answers["bad"][case]
    assert status == f"StatusCode.{code}"
    assert message in text, text
    assert_logits_close(grpc_answers["after_bad"], server.reference())
