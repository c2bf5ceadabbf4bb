"""keras.applications backbones by name, with their own input preprocessing built in.

A backbone takes the pipeline's float 0..255 images, so a model never needs to know how its
backbone was trained. `model.weights` is `none`, `imagenet` or the path to a local weights file.
`imagenet` goes through Keras' own mechanism: the applications constructor fetches the file into
Keras' cache with keras.utils.get_file (its URL, its hash check where Keras has a hash, its
progress bar) unless it is there already. EfficientNet built from a `<file>` lacks the input
scaling Keras adds for its ImageNet weights: for those use `imagenet` (offline: copy the file
into Keras' cache).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers

from cvtrain.errors import UserError
from cvtrain.models.backbone_specs import BACKBONES, check_backbone, imagenet_weights_path

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class WeightsUnavailable(UserError):
    """The ImageNet weights are not in Keras' cache and could not be downloaded and verified."""


def to_minus1_1(x: keras.KerasTensor) -> keras.KerasTensor:
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(x)


def caffe(x: keras.KerasTensor) -> keras.KerasTensor:
    """RGB -> BGR minus the ImageNet mean, as a frozen 1x1 convolution: unlike a Lambda it saves
    and loads with the checkpoint."""
    conv = layers.Conv2D(3, 1, trainable=False, name="rgb_to_bgr_minus_mean")
    x = conv(x)
    conv.set_weights(
        [np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -np.array(CAFFE_MEAN_BGR)]
    )
    return x


def builtin(x: keras.KerasTensor) -> keras.KerasTensor:
    """The application takes 0..255 images itself (EfficientNet's Rescaling + Normalization)."""
    return x


# BackboneSpec.preprocessing -> the input transform its ImageNet weights were trained with
PREPROCESSING: dict[str, Callable[[keras.KerasTensor], keras.KerasTensor]] = {
    "tf": to_minus1_1,
    "caffe": caffe,
    "builtin": builtin,
}


def application(name: str, input_shape: tuple[int, int, int], weights: str) -> keras.Model:
    """The keras.applications network without its classifier, with `weights` loaded."""
    build = getattr(keras.applications, BACKBONES[name].application)
    if weights != "imagenet":
        local = None if weights == "none" else str(Path(weights).expanduser())
        return build(include_top=False, weights=local, input_shape=input_shape)
    try:
        return build(include_top=False, weights="imagenet", input_shape=input_shape)
    except Exception as exc:  # a failed fetch is a bare Exception; a bad hash a ValueError
        path = imagenet_weights_path(name, input_shape)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise WeightsUnavailable(
            f"model.weights=imagenet: no ImageNet weights for model.backbone={name} ({reason}); "
            f"copy {BACKBONES[name].imagenet_url(input_shape)} to {path}, or set model.weights=none"
        ) from None


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
    check_backbone(name, input_shape)
    spec = BACKBONES[name]
    base = application(name, input_shape, weights)
    if features:
        outputs = [base.get_layer(spec.features[f]).output for f in features]
        base = keras.Model(base.input, outputs, name=f"{name}_features")
    inputs = keras.Input(shape=input_shape, name="image")
    x = PREPROCESSING[spec.preprocessing](inputs)
    backbone = keras.Model(inputs, base(x), name="backbone")
    if freeze:  # only ever switch off: `trainable = True` would unfreeze the fixed preprocessing
        backbone.trainable = False
    return backbone
