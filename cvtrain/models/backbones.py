"""keras.applications backbones by name, with their own input preprocessing built in.

A backbone takes the pipeline's float 0..255 images, so a model never needs to know how its
backbone was trained. `model.weights` is `none`, `imagenet` (read from Keras' cache: this tool never
downloads weights during a run) or the path to a local weights file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from cvtrain.errors import ConfigError

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # keras.applications constructor
    preprocessing: str  # "tf": scale to [-1, 1]; "caffe": RGB -> BGR minus the ImageNet mean
    min_size: int  # smallest height/width keras.applications accepts
    features: dict[str, str]  # feature name -> layer name; "stride4" / "stride16" for DeepLab

    def weights_file(self, input_shape: tuple[int, int, int]) -> str:
        """Keras' cache name of the ImageNet no-top weights (MobileNetV2's depend on the size)."""
        if self.application == "MobileNetV2":
            rows = input_shape[0] if input_shape[0] == input_shape[1] else 224
            rows = rows if rows in (96, 128, 160, 192, 224) else 224
            return (
                f"mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
            )
        stem = self.application.lower()
        return f"{stem}/{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5"


BACKBONES: dict[str, BackboneSpec] = {
    "xception": BackboneSpec(
        "Xception",
        "tf",
        71,
        {"stride4": "block3_sepconv2_bn", "stride16": "block13_sepconv2_bn"},
    ),
    "resnet50": BackboneSpec(
        "ResNet50",
        "caffe",
        32,
        {"stride4": "conv2_block3_out", "stride16": "conv4_block6_out"},
    ),
    "mobilenetv2": BackboneSpec(
        "MobileNetV2",
        "tf",
        32,
        {"stride4": "block_3_expand_relu", "stride16": "block_13_expand_relu"},
    ),
}


def imagenet_weights_path(name: str, input_shape: tuple[int, int, int]) -> Path:
    """Where keras.applications looks for (and would download) the ImageNet weights."""
    if "KERAS_HOME" in os.environ:  # the same rule as keras.utils.get_file
        home = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = (Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")) / ".keras"
    return home / "models" / Path(BACKBONES[name].weights_file(input_shape)).name


def resolve_weights(name: str, weights: str, input_shape: tuple[int, int, int]) -> str | None:
    """The `weights` argument for keras.applications; ImageNet only if its file is already here."""
    if weights == "none":
        return None
    if weights != "imagenet":  # a local file (config validation checked that it exists)
        return str(Path(weights).expanduser())
    cached = imagenet_weights_path(name, input_shape)
    if not cached.is_file():
        url = WEIGHTS_URL + BACKBONES[name].weights_file(input_shape)
        raise ConfigError(
            f"model.weights=imagenet for {name} needs {cached} and there is no download here; "
            f"put {url} there, or set model.weights=/path/to/{cached.name} (or none)"
        )
    return "imagenet"


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
    if name not in BACKBONES:
        raise ConfigError(
            f"model.backbone={name!r} is unknown; choose one of {', '.join(BACKBONES)}"
        )
    spec = BACKBONES[name]
    if min(input_shape[:2]) < spec.min_size:
        raise ConfigError(
            f"model.backbone={name} needs data.image_size of at least "
            f"[{spec.min_size},{spec.min_size}], got {list(input_shape[:2])}"
        )
    application = getattr(keras.applications, spec.application)
    base = application(
        include_top=False,
        weights=resolve_weights(name, weights, input_shape),
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
