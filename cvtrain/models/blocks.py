"""Residual building blocks shared by the classification and segmentation models.

They follow the chapter's "modern convnet architecture patterns": residual connections with a 1x1
projection when the shape changes, and pre-activation BatchNormalization -> ReLU -> convolution
with `use_bias=False` (BatchNormalization supplies the offset, so a bias would be wasted).
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.tasks.base import classifier_units


def scaled(filters: list[int], width: float) -> list[int]:
    """Filter counts times the width multiplier (quick runs use width < 1)."""
    return [max(1, round(f * width)) for f in filters]


def bn_relu_conv(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int = 3,
    *,
    separable: bool = False,
    dilation_rate: int = 1,
) -> keras.KerasTensor:
    """BatchNormalization -> ReLU -> (separable) convolution, no bias: the pre-activation unit."""
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    return conv(filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False)(
        x
    )


def bn_relu_sepconv(
    x: keras.KerasTensor, filters: int, dilation_rate: int = 1
) -> keras.KerasTensor:
    """BatchNormalization -> ReLU -> 3x3 SeparableConv2D without bias (mini-Xception's unit)."""
    return bn_relu_conv(x, filters, separable=True, dilation_rate=dilation_rate)


def conv_block(
    x: keras.KerasTensor, filters: int, *, separable: bool = False, residual: bool = False
) -> keras.KerasTensor:
    """Two pre-activation 3x3 units at constant resolution (a U-Net stage, DeepLab's decoder).

    With `residual` the input is added back, through a 1x1 projection when the channels differ.
    """
    shortcut = x
    x = bn_relu_conv(x, filters, separable=separable)
    x = bn_relu_conv(x, filters, separable=separable)
    if not residual:
        return x
    if shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False)(shortcut)
    return layers.add([x, shortcut])


def projection(x: keras.KerasTensor, filters: int, strides: int = 1, **conv) -> keras.KerasTensor:
    """A residual's 1x1 convolution, strided to match a downsampled branch.

    Stride 2 is written as subsampling (1x1 max-pooling, stride 2) then the 1x1 convolution:
    the same outputs and parameters as Conv2D(filters, 1, strides=2, padding="same"), whose
    gradient aborts the process ("double free") on TF 2.21's oneDNN CPU kernels when a batch
    holds 3, 5 or 7 images, e.g. the last batch of an epoch.
    """
    if strides != 1:
        x = layers.MaxPooling2D(1, strides=strides, padding="same")(x)
    return layers.Conv2D(filters, 1, **conv)(x)


def separable_residual_block(
    x: keras.KerasTensor, filters: int, downsample: bool = True
) -> keras.KerasTensor:
    """Two BN-ReLU-SeparableConv2D units, optional stride-2 max-pooling, projected residual.

    The residual gets a 1x1 convolution (strided when downsampling) only when its shape differs,
    so the block can also be stacked at constant size.
    """
    residual = x
    x = bn_relu_sepconv(x, filters)
    x = bn_relu_sepconv(x, filters)
    strides = 1
    if downsample:
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        strides = 2
    if strides != 1 or residual.shape[-1] != filters:
        residual = projection(residual, filters, strides, use_bias=False)
    return layers.add([x, residual])


def residual_block(x: keras.KerasTensor, filters: int, pooling: bool = False) -> keras.KerasTensor:
    """The chapter's plain residual block: two 3x3 ReLU convolutions, then add the input.

    With pooling the block halves the resolution (2x2 max-pooling) and the residual is projected by
    a strided 1x1 convolution; otherwise a 1x1 convolution only when the channel count changes.
    """
    residual = x
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    if pooling:
        x = layers.MaxPooling2D(2, padding="same")(x)
        residual = projection(residual, filters, strides=2)
    elif residual.shape[-1] != filters:
        residual = projection(residual, filters)
    return layers.add([x, residual])


def classifier_head(x: keras.KerasTensor, num_classes: int, dropout: float) -> keras.KerasTensor:
    """Dropout, then one sigmoid unit or a softmax, as tasks.base.classifier_units decides.

    The output layer is float32 so that mixed-precision training stays numerically stable.
    """
    if dropout:
        x = layers.Dropout(dropout)(x)
    units = classifier_units(num_classes)
    if units == 1:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    return layers.Dense(units, activation="softmax", dtype="float32", name="probabilities")(x)
