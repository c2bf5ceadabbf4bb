"""keras.applications backbones by name, with their own input preprocessing built in.

A backbone takes the pipeline's float 0..255 images, so a model never needs to know how its
backbone was trained. `model.weights` is `none`, `imagenet` (read from Keras' cache: this tool never
downloads weights during a run) or the path to a local weights file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers

from cvtrain.models.backbone_specs import BACKBONES, check_backbone

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def keras_weights(weights: str) -> str | None:
    """`model.weights` as keras.applications takes it (check_backbone saw that the file exists)."""
    if weights in ("none", "imagenet"):
        return None if weights == "none" else "imagenet"
    return str(Path(weights).expanduser())


def preprocessing(kind: str, x: keras.KerasTensor) -> keras.KerasTensor:
    """The input transform the backbone's ImageNet weights were trained with."""
    if kind == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(x)
    # caffe: a frozen 1x1 convolution swaps RGB to BGR and subtracts the mean; unlike a Lambda
    # it saves and loads with the checkpoint.
    conv = layers.Conv2D(3, 1, trainable=False, name="rgb_to_bgr_minus_mean")
    x = conv(x)
    conv.set_weights(
        [np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -np.array(CAFFE_MEAN_BGR)]
    )
    return x


def load_backbone(
    name: str,
    input_shape: tuple[int, int, int],
    weights: str = "none",
    freeze: bool = False,
    features: Sequence[str] = (),
) -> keras.Model:
    """A keras.applications network without its classifier, fed float 0..255 images.

    It outputs the last feature map, or the named `features` (keys of BackboneSpec.features) in
    order. `freeze` makes every layer non-trainable; Keras 3 then also runs BatchNormalization in
    inference mode (moving statistics are used and left unchanged), as fine-tuning needs.
    """
    check_backbone(name, input_shape, weights)
    spec = BACKBONES[name]
    application = getattr(keras.applications, spec.application)
    base = application(
        include_top=False,
        weights=keras_weights(weights),
        input_shape=input_shape,
    )
    if features:
        outputs = [base.get_layer(spec.features[f]).output for f in features]
        base = keras.Model(base.input, outputs, name=f"{name}_features")
    inputs = keras.Input(shape=input_shape, name="image")
    backbone = keras.Model(inputs, base(preprocessing(spec.preprocessing, inputs)), name="backbone")
    if freeze:  # only ever switch off: `trainable = True` would unfreeze the fixed preprocessing
        backbone.trainable = False
    return backbone
