"""The chapter's residual_block example: plain Conv2D residual blocks, then global pooling.

Every block but the last halves the resolution (2x2 max-pooling, strided 1x1 projection). With
the defaults (filters 32/64/128) at 32x32x3 and one sigmoid output: 297,697 parameters.
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.blocks import classifier_head, residual_block, scaled
from cvtrain.models.model_config import ResidualConvNet


def build(cfg: ResidualConvNet, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters = scaled(cfg.filters, cfg.width)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for i, f in enumerate(filters):
        x = residual_block(x, f, pooling=i < len(filters) - 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = classifier_head(x, num_classes, cfg.dropout)
    return keras.Model(inputs, outputs, name="residual_convnet")
