"""The schema of ``manifest.json``, the description stored beside every checkpoint's weights."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from app.nets import ResNetConfig

__all__ = ["FORMAT", "MAX_INPUT_VALUES", "Architecture", "InputSpec", "Manifest", "TrainingInfo", "WeightsSpec"]

FORMAT = "foldserve/1"
"""The only checkpoint format this version reads and writes."""

MAX_INPUT_VALUES = 4 * 1024 * 1024
"""Values in one input (channels x height x width): RGBA at 1024x1024, 28 times an ImageNet 3x224x224 input.

Each side may reach 4096 (a long strip), but a 3x4096x4096 input is 50 M values, 12 GiB for a float64 batch
of 32 before the first layer; no ResNet checkpoint is trained on that."""

_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """The :class:`app.nets.ResNetConfig` fields, as stored."""

    depth: Literal[18, 34, 50, 101, 152]
    block: Literal["basic", "bottleneck"]
    width: int = Field(ge=1, le=1024)
    in_channels: int = Field(ge=1, le=4)
    num_classes: int = Field(ge=2, le=100_000)
    stem: Literal["small", "imagenet"]
    activation: Literal["relu", "identity"]
    skips: Literal["standard", "annealed", "none"]

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        self.to_config()  # raises ValueError on a depth/block mismatch
        return self

    def to_config(self) -> ResNetConfig:
        return ResNetConfig.from_dict(self.model_dump())

    @classmethod
    def from_config(cls, config: ResNetConfig) -> Architecture:
        return cls(**config.to_dict())


class InputSpec(_Strict):
    """What one input image must look like once decoded: its size, how it is brought to that size, and its
    normalisation.

    Attributes:
        channels: channels the model takes (1 grayscale, 3 RGB, 2 and 4 with alpha).
        height: rows of the model's input.
        width: columns of the model's input.
        mean: per-channel mean subtracted from pixels scaled to [0, 1].
        std: per-channel standard deviation the centred pixels are divided by.
        resize: when set, the image is first resized so that its SHORTER side has this many pixels, keeping
            its aspect ratio; ``crop`` then cuts the ``height x width`` input out of it. ``None`` (the default,
            and what manifests without the field mean): the whole image is resized to ``height x width``.
        crop: ``"center"``: a centre crop of ``height x width`` after ``resize``. Needs ``resize``, and
            ``resize`` needs it (the model takes one fixed size). torchvision's ImageNet convention is
            ``resize=256, crop="center"`` with ``height = width = 224``.
    """

    channels: int = Field(ge=1, le=4)
    height: int = Field(ge=1, le=4096)
    width: int = Field(ge=1, le=4096)
    mean: list[FiniteFloat]
    std: list[FiniteFloat]
    resize: int | None = Field(default=None, ge=1, le=4096)
    crop: Literal["center"] | None = None

    @model_validator(mode="after")
    def _per_channel(self) -> InputSpec:
        values = self.channels * self.height * self.width
        if values > MAX_INPUT_VALUES:
            raise ValueError(
                f"input is {self.channels}x{self.height}x{self.width} = {values} values per image, more than "
                f"{MAX_INPUT_VALUES} (4x1024x1024)"
            )
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) != self.channels:
                raise ValueError(f"input.{key} needs one value per channel ({self.channels}), got {len(values)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"input.std must be positive, got {self.std}")
        return self

    @model_validator(mode="after")
    def _resize_and_crop(self) -> InputSpec:
        if (self.resize is None) != (self.crop is None):
            raise ValueError(
                f"input.resize and input.crop go together (resize the shorter side, then crop height x width), "
                f"got resize={self.resize}, crop={self.crop!r}; leave both out to resize the whole image"
            )
        if self.resize is not None and self.resize < max(self.height, self.width):
            raise ValueError(
                f"input.resize must be >= max(height, width) = {max(self.height, self.width)} to crop "
                f"{self.height}x{self.width} from the resized image, got {self.resize}"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_preprocessing(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a manifest without resize/crop stays byte-for-byte what older versions wrote, and readable by them
        data = handler(self)
        for key in ("resize", "crop"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class WeightsSpec(_Strict):
    """Where the weights are and their sha256, checked on every load."""

    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(safetensors|pt)$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TrainingInfo(BaseModel):
    """How the weights were obtained, so that anyone can obtain them again."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    split: str
    epochs: int = Field(ge=0)
    skip_schedule: dict[str, Any] = Field(default_factory=dict)
    test_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    command: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)


class Manifest(_Strict):
    """``manifest.json``: format, identity, architecture, input, labels, weights and training record."""

    format: Literal["foldserve/1"]
    name: str = Field(pattern=_NAME_PATTERN)
    version: str = Field(min_length=1, max_length=32)
    architecture: Architecture
    input: InputSpec
    labels: list[str]
    weights: WeightsSpec
    training: TrainingInfo | None = None

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels

    @model_validator(mode="after")
    def _fits_architecture(self) -> Manifest:
        if len(self.labels) != self.architecture.num_classes:
            raise ValueError(
                f"labels has {len(self.labels)} entries but architecture.num_classes is {self.architecture.num_classes}"
            )
        if self.input.channels != self.architecture.in_channels:
            raise ValueError(
                f"input.channels is {self.input.channels} but architecture.in_channels is "
                f"{self.architecture.in_channels}"
            )
        return self
