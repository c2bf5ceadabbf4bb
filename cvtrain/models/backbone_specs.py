"""What each keras.applications backbone needs, without importing Keras.

Config validation reads these facts (names, smallest input, where ImageNet weights live), so a
backbone that cannot work is reported before TensorFlow loads; backbones.py builds from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvtrain.errors import ConfigError

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # keras.applications constructor
    preprocessing: str  # "tf": scale to [-1, 1]; "caffe": RGB -> BGR minus the ImageNet mean
    min_size: int  # smallest height/width keras.applications accepts
    features: dict[str, str]  # feature name -> layer name; "stride4" / "stride16" for DeepLab

    def weights_file(self, input_shape: tuple[int, ...]) -> str:
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


def imagenet_weights_path(name: str, input_shape: tuple[int, ...]) -> Path:
    """Where keras.applications looks for (and would download) the ImageNet weights."""
    if "KERAS_HOME" in os.environ:  # the same rule as keras.utils.get_file
        home = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = (Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")) / ".keras"
    return home / "models" / Path(BACKBONES[name].weights_file(input_shape)).name


def check_backbone(name: str, image_size: tuple[int, ...], weights: str) -> None:
    """Raise ConfigError for a backbone that cannot be built at this size with these weights."""
    if name not in BACKBONES:
        raise ConfigError(
            f"model.backbone={name!r} is unknown; choose one of {', '.join(BACKBONES)}"
        )
    spec = BACKBONES[name]
    if min(image_size[:2]) < spec.min_size:
        raise ConfigError(
            f"model.backbone={name} needs data.image_size of at least "
            f"[{spec.min_size},{spec.min_size}], got {list(image_size[:2])}"
        )
    cached = imagenet_weights_path(name, image_size)
    if weights == "imagenet" and not cached.is_file():
        url = WEIGHTS_URL + spec.weights_file(image_size)
        raise ConfigError(
            f"model.weights=imagenet for {name} needs {cached} and there is no download here; "
            f"put {url} there, or set model.weights=/path/to/{cached.name} (or none)"
        )
