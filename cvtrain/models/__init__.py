"""Model registry: `model.name` -> builder(cfg, input_shape, num_classes) -> keras.Model.

Builders are imported on use, so naming a model never imports another model's code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from cvtrain.config import ModelConfig
from cvtrain.errors import ConfigError

if TYPE_CHECKING:
    import keras

MODELS: dict[str, str] = {
    "seg_convnet": "cvtrain.models.seg_convnet:build",
    "mini_xception": "cvtrain.models.mini_xception:build",
    "residual_convnet": "cvtrain.models.residual_convnet:build",
    "xception": "cvtrain.models.backbone_classifier:build",
    "unet": "cvtrain.models.unet:build",
    "deeplabv3plus": "cvtrain.models.deeplabv3plus:build",
}


def build_model(
    cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    if cfg.name not in MODELS:
        raise ConfigError(f"model.name={cfg.name!r} is unknown; choose one of {', '.join(MODELS)}")
    module, func = MODELS[cfg.name].split(":")
    model = getattr(import_module(module), func)(cfg, input_shape, num_classes)
    set_bn_momentum(model, cfg.bn_momentum)
    return model


def set_bn_momentum(layer: keras.Layer, momentum: float) -> None:
    """One knob for every BatchNormalization, nested backbones included (saved with the model)."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = momentum
    for child in getattr(layer, "layers", ()):
        set_bn_momentum(child, momentum)


def scaled(filters: list[int], width: float) -> list[int]:
    """Filter counts times the width multiplier (quick runs use width < 1)."""
    return [max(1, round(f * width)) for f in filters]
