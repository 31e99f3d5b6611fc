import json

import pytest
from pydantic import ValidationError

from app.store import InputSpec, read_manifest
from tests.helpers import tiny_checkpoint

RGB = {"channels": 3, "height": 224, "width": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_imagenet_preprocessing_is_valid_and_round_trips():
    spec = InputSpec(**RGB, resize=256, crop="center")
    assert (spec.resize, spec.crop, spec.shape) == (256, "center", (3, 224, 224))
    assert InputSpec.model_validate_json(spec.model_dump_json()) == spec


def test_resize_may_equal_the_larger_side():
    spec = InputSpec(**{**RGB, "height": 200}, resize=224, crop="center")
    assert spec.resize == 224


def test_without_preprocessing_fields_the_whole_image_is_resized_and_nothing_new_is_written():
    spec = InputSpec(**RGB)
    assert spec.resize is None and spec.crop is None
    assert json.loads(spec.model_dump_json()) == RGB  # what older versions wrote, and can read back


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crop": "center"}, r"resize and input\.crop go together .* got resize=None, crop='center'"),
        ({"resize": 256}, r"resize and input\.crop go together .* got resize=256, crop=None"),
        ({"resize": 200, "crop": "center"}, r"resize must be >= max\(height, width\) = 224 .* got 200"),
        ({"resize": 256, "crop": "random"}, r"crop\n.*Input should be 'center'"),
        ({"resize": 0, "crop": "center"}, r"resize\n.*greater than or equal to 1"),
        ({"pad": 4}, r"pad\n.*Extra inputs are not permitted"),
    ],
)
def test_invalid_preprocessing_is_refused_with_the_reason(fields, message):
    with pytest.raises(ValidationError, match=message):
        InputSpec(**RGB, **fields)


def test_old_manifest_without_the_fields_loads_unchanged(tmp_path):
    folder = tiny_checkpoint(tmp_path, size=28)
    data = json.loads((folder / "manifest.json").read_text())
    assert "resize" not in data["input"] and "crop" not in data["input"]
    manifest = read_manifest(folder)
    assert manifest.input.resize is None and manifest.input.crop is None
    assert manifest.input.shape == (1, 28, 28)


def test_manifest_with_the_fields_loads(tmp_path):
    folder = tiny_checkpoint(tmp_path, size=28)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["input"].update(resize=32, crop="center")
    path.write_text(json.dumps(data))
    assert read_manifest(folder).input.resize == 32
