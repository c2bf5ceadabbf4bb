"""U-Net: an encoder whose every stage is copied across (skip connection) to the decoder.

`model.filters` lists the encoder stages (depth = its length); the bottleneck doubles the last.
Stages are pre-activation BN-ReLU-conv pairs from blocks.py; `model.separable` and
`model.residual` give the keras.io Oxford-Pets variants. Any image size of at least 2^depth works:
pooling rounds up and each upsampled map is cropped to its skip connection.

`model.backbone=mobilenetv2|resnet50|efficientnetb0` replaces the encoder by that
keras.applications network (backbones.py, as DeepLab's): its stride-32 output is the bottleneck,
its stride-2/4/8/16 features are the skips, `model.filters` the decoder channels at those strides,
and a last decoder stage without a skip returns to the input size. These backbones round sizes
up as the pooling here does, so any size the backbone takes works the same way.
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.backbone_specs import UNET_SKIPS
from cvtrain.models.backbones import load_backbone
from cvtrain.models.blocks import conv_block, scaled
from cvtrain.models.model_config import UNet


def crop_to(x: keras.KerasTensor, like: keras.KerasTensor) -> keras.KerasTensor:
    """Drop the extra bottom row / right column that upsampling a rounded-up map adds."""
    extra_h, extra_w = x.shape[1] - like.shape[1], x.shape[2] - like.shape[2]
    if extra_h or extra_w:
        x = layers.Cropping2D(((0, extra_h), (0, extra_w)))(x)
    return x


def up(
    x: keras.KerasTensor, filters: int, skip: keras.KerasTensor | None, variant: dict[str, bool]
) -> keras.KerasTensor:
    """One decoder stage: a 2x transposed convolution, the skip connection, a conv block."""
    x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", use_bias=False)(x)
    if skip is not None:
        x = layers.Concatenate()([crop_to(x, skip), skip])
    return conv_block(x, filters, **variant)


def encode(
    x: keras.KerasTensor, filters: list[int], variant: dict[str, bool]
) -> tuple[keras.KerasTensor, list[keras.KerasTensor]]:
    """The plain encoder: its bottleneck and one skip per stage, shallowest first."""
    x = layers.Rescaling(1.0 / 255)(x)
    skips = []
    for f in filters:
        x = conv_block(x, f, **variant)
        skips.append(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    return conv_block(x, 2 * filters[-1], **variant), skips


def build(cfg: UNet, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters = scaled(cfg.filters, cfg.width)
    variant = {"separable": cfg.separable, "residual": cfg.residual}
    inputs = keras.Input(shape=input_shape, name="image")
    if cfg.backbone == "none":
        x, skips = encode(inputs, filters, variant)
    else:
        features = (*UNET_SKIPS, "stride32")
        backbone = load_backbone(
            cfg.backbone, input_shape, cfg.weights, cfg.freeze_backbone, features
        )
        *skips, x = backbone(inputs)
        # The first skip is at half the input size: a last stage without one returns to it.
        skips, filters = [None, *skips], [filters[0], *filters]
    for f, skip in zip(reversed(filters), reversed(skips)):
        x = up(x, f, skip, variant)
    x = crop_to(x, inputs)  # after a last stage without a skip to crop to
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if cfg.dropout:
        x = layers.SpatialDropout2D(cfg.dropout)(x)
    # float32 softmax keeps mixed-precision training numerically stable.
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name="unet")
