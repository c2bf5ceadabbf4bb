"""Each model's own settings, typed: schema.ModelConfig's keys plus what its builder reads.

Plain Python (the builders import Keras), so a key another model reads is an unknown key when
the config is checked, with the nearest valid one suggested, before TensorFlow loads. The model
table (cvtrain.models) names the class of each model; a resumed run locks its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cvtrain.config.schema import ModelConfig, check, choice
from cvtrain.models.backbone_specs import BACKBONES


def _dropout(value: float) -> None:
    check(0 <= value < 1, "model.dropout", f"{value} must be in [0, 1)")


@dataclass
class StagedModel(ModelConfig):
    """Stages of convolutions: one entry of `filters` a stage, each multiplied by `width`."""

    filters: list[int] = field(default_factory=lambda: [64, 128, 256])
    width: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.filters) >= 1, "model.filters", "needs at least one stage")
        check(min(self.filters) >= 1, "model.filters", f"{list(self.filters)} must be >= 1")
        check(self.width > 0, "model.width", f"{self.width} must be > 0")


@dataclass
class ConvNetModel(StagedModel):
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _dropout(self.dropout)


@dataclass
class BackboneModel(ModelConfig):
    """A keras.applications network inside the model (none: the model's own layers)."""

    backbone: str = "none"
    weights: str = "none"  # none | imagenet (downloaded into Keras' cache) | a local file
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.backbone, "model.backbone", ("none", *BACKBONES))
        check(
            self.weights in ("none", "imagenet") or Path(self.weights).expanduser().is_file(),
            "model.weights",
            f"{self.weights!r} is not a file; use none, imagenet or the path to a weights file",
        )


@dataclass
class SegConvNet(ConvNetModel):
    """The chapter's encoder-decoder (cvtrain.models.seg_convnet)."""

    name: str = "seg_convnet"


@dataclass
class UNet(ConvNetModel, BackboneModel):
    name: str = "unet"
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    separable: bool = False  # SeparableConv2D instead of Conv2D
    residual: bool = False  # residual connections inside each stage


@dataclass
class DeepLabV3Plus(ConvNetModel, BackboneModel):
    name: str = "deeplabv3plus"
    backbone: str = "xception"
    filters: list[int] = field(default_factory=lambda: [256, 48])  # ASPP, low-level channels
    separable: bool = False
    atrous_rates: list[int] = field(default_factory=lambda: [6, 12, 18])  # ASPP

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            len(self.atrous_rates) >= 1 and min(self.atrous_rates) >= 1,
            "model.atrous_rates",
            f"{list(self.atrous_rates)} needs at least one rate, all >= 1",
        )


@dataclass
class MiniXception(ConvNetModel):
    name: str = "mini_xception"
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    dropout: float = 0.5


@dataclass
class ResidualConvNet(ConvNetModel):
    name: str = "residual_convnet"
    filters: list[int] = field(default_factory=lambda: [32, 64, 128])


@dataclass
class BackboneClassifier(BackboneModel):
    name: str = "xception"
    backbone: str = "xception"
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _dropout(self.dropout)


@dataclass
class RetinaNet(StagedModel, BackboneModel):
    name: str = "retinanet"
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    fpn_channels: int = 64  # channels of every pyramid level and of its heads
    head_convs: int = 2  # 3x3 convolutions in each head before its output

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.fpn_channels >= 1, "model.fpn_channels", f"{self.fpn_channels} must be >= 1")
        check(self.head_convs >= 0, "model.head_convs", f"{self.head_convs} must be >= 0")
