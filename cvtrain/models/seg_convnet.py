"""The chapter's segmentation model: strided Conv2D encoder, Conv2DTranspose decoder.

With the defaults (filters 64/128/256) at 200x200x3 and 3 classes it has 2,880,643
parameters, as in the book's summary.
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.blocks import scaled
from cvtrain.models.model_config import SegConvNet


def build(cfg: SegConvNet, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters = scaled(cfg.filters, cfg.width)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for f in filters:  # each stage halves the resolution
        x = layers.Conv2D(f, 3, strides=2, activation="relu", padding="same")(x)
        x = layers.Conv2D(f, 3, activation="relu", padding="same")(x)
    for f in reversed(filters):  # ...and each decoder stage doubles it back
        x = layers.Conv2DTranspose(f, 3, activation="relu", padding="same")(x)
        x = layers.Conv2DTranspose(f, 3, activation="relu", padding="same", strides=2)(x)
    if cfg.dropout:
        x = layers.SpatialDropout2D(cfg.dropout)(x)
    # float32 softmax keeps mixed-precision training numerically stable.
    outputs = layers.Conv2D(
        num_classes, 3, activation="softmax", padding="same", dtype="float32", name="mask"
    )(x)
    return keras.Model(inputs, outputs, name="seg_convnet")
