"""U-Net: an encoder whose every stage is copied across (skip connection) to the decoder.

`model.filters` lists the encoder stages (depth = its length); the bottleneck doubles the last.
Stages are pre-activation BN-ReLU-conv pairs from blocks.py; `model.separable` and
`model.residual` give the keras.io Oxford-Pets variants. Any image size of at least 2^depth works:
pooling rounds up and each upsampled map is cropped to its skip connection.
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.config import ModelConfig
from cvtrain.models import scaled
from cvtrain.models.blocks import conv_block


def crop_to(x: keras.KerasTensor, like: keras.KerasTensor) -> keras.KerasTensor:
    """Drop the extra bottom row / right column that upsampling a rounded-up map adds."""
    extra_h, extra_w = x.shape[1] - like.shape[1], x.shape[2] - like.shape[2]
    if extra_h or extra_w:
        x = layers.Cropping2D(((0, extra_h), (0, extra_w)))(x)
    return x


def build(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters = scaled(cfg.filters, cfg.width)
    variant = {"separable": cfg.separable, "residual": cfg.residual}
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    skips = []
    for f in filters:
        x = conv_block(x, f, **variant)
        skips.append(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = conv_block(x, 2 * filters[-1], **variant)
    for f, skip in zip(reversed(filters), reversed(skips)):
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", use_bias=False)(x)
        x = layers.Concatenate()([crop_to(x, skip), skip])
        x = conv_block(x, f, **variant)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if cfg.dropout:
        x = layers.SpatialDropout2D(cfg.dropout)(x)
    # float32 softmax keeps mixed-precision training numerically stable.
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name="unet")
