"""The chapter's mini-Xception: separable convolutions, BatchNormalization, residuals.

With the defaults (filters 32..512, dropout 0.5) at 180x180x3 and one sigmoid output it has
721,857 parameters, as printed in the book (convolutions without bias).
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.blocks import classifier_head, scaled, separable_residual_block
from cvtrain.models.model_config import MiniXception


def build(cfg: MiniXception, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    filters = scaled(cfg.filters, cfg.width)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(filters[0], 5, use_bias=False)(x)  # the stem
    for f in filters:  # each block halves the resolution
        x = separable_residual_block(x, f)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = classifier_head(x, num_classes, cfg.dropout)
    return keras.Model(inputs, outputs, name="mini_xception")
