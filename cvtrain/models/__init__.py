"""Model registry: `model.name` -> what it solves, what it needs, and its builder.

Builders are imported on use, so naming a model never imports another model's code (or Keras);
the constraints are plain Python, so config validation reports a model that cannot work at the
requested size before TensorFlow loads, and `build_model` applies the very same check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from cvtrain.config.schema import ModelConfig, choice
from cvtrain.errors import ConfigError
from cvtrain.models import model_config
from cvtrain.models.anchors import SIDE_MULTIPLE
from cvtrain.models.backbone_specs import BACKBONES, UNET_SKIPS, check_backbone
from cvtrain.registry import resolve
from cvtrain.tasks.specs import CLASSIFICATION, DETECTION, SEGMENTATION

if TYPE_CHECKING:
    import keras


def _divisible_by_stages(cfg: model_config.StagedModel, size: tuple[int, int]) -> None:
    """Strided convolutions and transposed ones only reconstruct sizes divisible by 2^stages."""
    factor = 2 ** len(cfg.filters)
    if size[0] % factor or size[1] % factor:
        fix = [max(factor, round(s / factor) * factor) for s in size]
        raise ConfigError(
            f"model={cfg.name} with {len(cfg.filters)} stages needs data.image_size divisible by "
            f"{factor}, got [{size[0]}, {size[1]}]; use data.image_size=[{fix[0]},{fix[1]}]"
        )


def _at_least_one_pixel_deep(cfg: model_config.StagedModel, size: tuple[int, int]) -> None:
    smallest = 2 ** len(cfg.filters)
    if min(size) < smallest:
        raise ConfigError(
            f"model={cfg.name} with {len(cfg.filters)} stages needs data.image_size of at least "
            f"[{smallest},{smallest}], got {list(size)}; use fewer model.filters"
        )


def _backbone(cfg: model_config.BackboneModel, size: tuple[int, int]) -> None:
    check_backbone(cfg.backbone, size)


# Backbones with a feature map at each stride 2..32 that rounds sizes up, as U-Net pooling does
# (Xception's unpadded convolutions round down).
UNET_ENCODERS = tuple(
    name for name, spec in BACKBONES.items() if set(spec.features) >= {*UNET_SKIPS, "stride32"}
)


def _unet(cfg: model_config.UNet, size: tuple[int, int]) -> None:
    if cfg.backbone == "none":
        if cfg.weights != "none" or cfg.freeze_backbone:  # nothing to load or freeze
            raise ConfigError(
                "model.weights and model.freeze_backbone need a model.backbone for model=unet: "
                f"one of {', '.join(UNET_ENCODERS)}"
            )
        _at_least_one_pixel_deep(cfg, size)
        return
    if cfg.backbone not in UNET_ENCODERS:
        raise ConfigError(
            f"model=unet takes model.backbone=none or one of {', '.join(UNET_ENCODERS)}, "
            f"got {cfg.backbone}"
        )
    if len(cfg.filters) != len(UNET_SKIPS):
        raise ConfigError(
            f"model=unet with model.backbone={cfg.backbone} takes {len(UNET_SKIPS)} model.filters "
            f"(decoder channels at strides 2, 4, 8, 16), got {list(cfg.filters)}"
        )
    check_backbone(cfg.backbone, size)


def _deeplab(cfg: model_config.DeepLabV3Plus, size: tuple[int, int]) -> None:
    if len(cfg.filters) != 2:
        raise ConfigError(
            f"model=deeplabv3plus takes model.filters=[aspp_channels,low_level_channels] "
            f"(e.g. [256,48]), got {list(cfg.filters)}"
        )
    _backbone(cfg, size)


RETINANET_BACKBONES = tuple(
    name
    for name, spec in BACKBONES.items()
    if {"stride8", "stride16", "stride32"} <= set(spec.features)
)


def _retinanet(cfg: model_config.RetinaNet, size: tuple[int, int]) -> None:
    """Anchors are laid out from the image size alone (cvtrain/models/anchors.py): every side
    divisible by 32 keeps the feature maps exactly that size."""
    if size[0] % SIDE_MULTIPLE or size[1] % SIDE_MULTIPLE:
        fix = [max(SIDE_MULTIPLE, round(s / SIDE_MULTIPLE) * SIDE_MULTIPLE) for s in size]
        raise ConfigError(
            f"model=retinanet needs data.image_size divisible by {SIDE_MULTIPLE}, got "
            f"[{size[0]}, {size[1]}]; use data.image_size=[{fix[0]},{fix[1]}]"
        )
    if cfg.backbone == "none":
        if len(cfg.filters) != 5:
            raise ConfigError(
                "model=retinanet with model.backbone=none takes 5 model.filters (its stages at "
                f"strides 2, 4, 8, 16, 32), got {list(cfg.filters)}"
            )
        return
    if cfg.backbone not in RETINANET_BACKBONES:
        raise ConfigError(
            f"model=retinanet takes model.backbone=none or one of {', '.join(RETINANET_BACKBONES)}"
            f", got {cfg.backbone}"
        )
    check_backbone(cfg.backbone, size)


def _any_size(cfg: ModelConfig, size: tuple[int, int]) -> None:
    """Global pooling heads take any size the data check allows."""


@dataclass(frozen=True)
class ModelSpec:
    builder: str  # "module:function", imported on use
    task: str  # the task whose outputs it produces
    check: Callable[[ModelConfig, tuple[int, int]], None]  # raises ConfigError
    config: type[ModelConfig]  # its typed settings, every key its builder reads

    @property
    def settings(self) -> tuple[str, ...]:
        """Every model.* key that shapes this model; a resumed run locks them (state.resume)."""
        return tuple(f.name for f in fields(self.config))


MODELS: dict[str, ModelSpec] = {
    "seg_convnet": ModelSpec(
        "cvtrain.models.seg_convnet:build",
        SEGMENTATION,
        _divisible_by_stages,
        model_config.SegConvNet,
    ),
    "unet": ModelSpec("cvtrain.models.unet:build", SEGMENTATION, _unet, model_config.UNet),
    "deeplabv3plus": ModelSpec(
        "cvtrain.models.deeplabv3plus:build", SEGMENTATION, _deeplab, model_config.DeepLabV3Plus
    ),
    "mini_xception": ModelSpec(
        "cvtrain.models.mini_xception:build", CLASSIFICATION, _any_size, model_config.MiniXception
    ),
    "residual_convnet": ModelSpec(
        "cvtrain.models.residual_convnet:build",
        CLASSIFICATION,
        _any_size,
        model_config.ResidualConvNet,
    ),
    "xception": ModelSpec(
        "cvtrain.models.backbone_classifier:build",
        CLASSIFICATION,
        _backbone,
        model_config.BackboneClassifier,
    ),
    "retinanet": ModelSpec(
        "cvtrain.models.retinanet:build", DETECTION, _retinanet, model_config.RetinaNet
    ),
}


def config_of_model(name: str) -> type[ModelConfig]:
    """The settings class of model `name` (config.load types `model` with it)."""
    choice(name, "model.name", tuple(MODELS))
    return MODELS[name].config


def check_model(cfg: ModelConfig, image_size: tuple[int, ...], task: str | None = None) -> None:
    """Raise ConfigError if `cfg` cannot be built for this image size (and task)."""
    config_of_model(cfg.name)  # an unknown name is a one-line error
    spec = MODELS[cfg.name]
    if task is not None and spec.task != task:
        fitting = [name for name, other in MODELS.items() if other.task == task]
        raise ConfigError(
            f"model={cfg.name} is a {spec.task} model; task={task} needs one of "
            f"{', '.join(fitting)}"
        )
    spec.check(cfg, (int(image_size[0]), int(image_size[1])))


def build_model(
    cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    check_model(cfg, input_shape)
    model = resolve(MODELS[cfg.name].builder)(cfg, input_shape, num_classes)
    set_bn_momentum(model, cfg.bn_momentum)
    return model


def set_bn_momentum(layer: keras.Layer, momentum: float) -> None:
    """One knob for every BatchNormalization, nested backbones included (saved with the model)."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = momentum
    for child in getattr(layer, "layers", ()):
        set_bn_momentum(child, momentum)
