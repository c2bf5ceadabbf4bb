"""DeepLabV3+: a keras.applications backbone, atrous spatial pyramid pooling, and a decoder.

ASPP looks at the stride-16 backbone features at several dilation rates plus the image mean; the
decoder upsamples that to the stride-4 (low-level) features, mixes both, and resizes to the
input. Bilinear resizing to each map's exact size lets any image size the backbone takes work.
Resizing is `keras.ops.image.resize`, not the Resizing layer: in Keras 3.15 that layer's default
`training=True` leaks into the layers after it (keras-team/keras#23166), so a plain `model(x)`
would run the decoder's BatchNormalization in training mode.
`model.filters` is [ASPP/decoder channels, low-level projection channels] (the paper: 256, 48).
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.backbones import load_backbone
from cvtrain.models.blocks import bn_relu_conv, conv_block, scaled
from cvtrain.models.model_config import DeepLabV3Plus


def aspp(
    x: keras.KerasTensor, filters: int, rates: list[int], separable: bool
) -> keras.KerasTensor:
    """A 1x1 branch, one 3x3 branch per atrous rate, and image pooling, fused by a 1x1 conv."""
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(x)
    pooled = bn_relu_conv(pooled, filters, 1)
    pooled = layers.UpSampling2D(size=tuple(x.shape[1:3]))(pooled)
    branches = [bn_relu_conv(x, filters, 1)]
    branches += [bn_relu_conv(x, filters, separable=separable, dilation_rate=r) for r in rates]
    return bn_relu_conv(layers.Concatenate()([*branches, pooled]), filters, 1)


def build(cfg: DeepLabV3Plus, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters, low_filters = scaled(cfg.filters, cfg.width)
    backbone = load_backbone(
        cfg.backbone, input_shape, cfg.weights, cfg.freeze_backbone, ("stride4", "stride16")
    )
    inputs = keras.Input(shape=input_shape, name="image")
    low, high = backbone(inputs)
    x = aspp(high, filters, list(cfg.atrous_rates), cfg.separable)
    x = keras.ops.image.resize(x, tuple(low.shape[1:3]), interpolation="bilinear")
    x = layers.Concatenate()([x, bn_relu_conv(low, low_filters, 1)])
    x = conv_block(x, filters, separable=cfg.separable)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if cfg.dropout:
        x = layers.SpatialDropout2D(cfg.dropout)(x)
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    x = keras.ops.image.resize(x, tuple(input_shape[:2]), interpolation="bilinear")
    # float32 softmax keeps mixed-precision training numerically stable.
    outputs = layers.Activation("softmax", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name="deeplabv3plus")
