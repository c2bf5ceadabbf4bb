"""What each keras.applications backbone needs, without importing Keras.

Config validation reads these facts (names, smallest input), so a backbone that cannot work is
reported before TensorFlow loads; backbones.py builds from them. The ImageNet weights URLs are the
ones keras.applications fetches, so an offline user can be told which file to copy where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvtrain.errors import ConfigError

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)  # the input sizes with their own weights
UNET_SKIPS = ("stride2", "stride4", "stride8", "stride16")  # features U-Net's decoder joins


@dataclass(frozen=True)
class BackboneSpec:
    application: str  # keras.applications constructor
    # "tf": scale to [-1, 1]; "caffe": RGB -> BGR minus the ImageNet mean; "builtin": the
    # application rescales and normalizes 0..255 images itself (EfficientNet)
    preprocessing: str
    min_size: int  # smallest height/width keras.applications accepts
    # feature name -> layer name: "stride<N>" is the last layer at 1/N of the input size
    features: dict[str, str]
    weights_url: str  # the no-top ImageNet file keras.applications fetches ({rows}: MobileNetV2)

    def imagenet_url(self, input_shape: tuple[int, ...]) -> str:
        """The URL keras.applications fetches for this input (MobileNetV2's depends on it)."""
        rows = input_shape[0] if input_shape[0] == input_shape[1] else 224
        return self.weights_url.format(rows=rows if rows in MOBILENET_V2_SIZES else 224)


BACKBONES: dict[str, BackboneSpec] = {
    "xception": BackboneSpec(
        "Xception",
        "tf",
        71,
        {"stride4": "block3_sepconv2_bn", "stride16": "block13_sepconv2_bn"},
        KERAS_APPLICATIONS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": BackboneSpec(
        "ResNet50",
        "caffe",
        32,
        {
            "stride2": "conv1_relu",
            "stride4": "conv2_block3_out",
            "stride8": "conv3_block4_out",
            "stride16": "conv4_block6_out",
            "stride32": "conv5_block3_out",
        },
        KERAS_APPLICATIONS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "mobilenetv2": BackboneSpec(
        "MobileNetV2",
        "tf",
        32,
        {
            "stride2": "block_1_expand_relu",
            "stride4": "block_3_expand_relu",
            "stride8": "block_6_expand_relu",
            "stride16": "block_13_expand_relu",
            "stride32": "out_relu",
        },
        KERAS_APPLICATIONS
        + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    ),
    "efficientnetb0": BackboneSpec(
        "EfficientNetB0",
        "builtin",
        32,
        {
            "stride2": "block2a_expand_activation",
            "stride4": "block3a_expand_activation",
            "stride8": "block4a_expand_activation",
            "stride16": "block6a_expand_activation",
            "stride32": "top_activation",
        },
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
    ),
}


def keras_cache() -> Path:
    """Keras' cache folder, by keras.utils.get_file's rule ($KERAS_HOME, else ~/.keras; /tmp/.keras
    where that is not writable)."""
    default = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    home = Path(os.environ.get("KERAS_HOME", default / ".keras")).expanduser()
    return home if os.access(home, os.W_OK) else Path("/tmp/.keras")


def imagenet_weights_path(name: str, input_shape: tuple[int, ...]) -> Path:
    """Where keras.applications keeps (and downloads) the ImageNet weights."""
    url = BACKBONES[name].imagenet_url(input_shape)
    return keras_cache() / "models" / url.rsplit("/", 1)[-1]


def check_backbone(name: str, image_size: tuple[int, ...]) -> None:
    """Raise ConfigError for a backbone that cannot be built at this size."""
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone={name!r} is not one of {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    if min(image_size[:2]) < spec.min_size:
        raise ConfigError(
            f"model.backbone={name} needs data.image_size of at least "
            f"[{spec.min_size},{spec.min_size}], got {list(image_size[:2])}"
        )
