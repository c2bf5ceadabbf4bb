"""Grad-CAM (Selvaraju et al., 2017; Deep Learning with Python, 2nd ed., 9.4.3): where in an
image a model found the evidence for a class.

The class score's gradient with respect to a convolutional feature map, averaged over each
channel, weights that channel; the ReLU of the weighted sum, scaled to 0..1, is the heatmap.
By default the feature map is the last 4-D output before the model's classifier (its last layer
with weights), followed into nested models such as keras.applications backbones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

# Functional models index the calls of their layers by these keys (Keras 3's own helper).
from keras.src.ops.function import make_node_key

from cvtrain.data.pipeline import resize_image
from cvtrain.errors import ConfigError
from cvtrain.inference.serving import float32_model, model_image_size
from cvtrain.tasks.base import class_probabilities

# images -> (feature map, model output), computed in one pass so that one depends on the other
FeatureModel = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


@dataclass(frozen=True)
class Heatmap:
    heatmap: np.ndarray  # 0..1, at the explained image's own height and width
    class_id: int
    score: float  # the class's probability (segmentation: its mean over the pixels)


def _single(tensors):
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _call_nodes(model: keras.Model, layer: keras.Layer) -> list:
    """`layer`'s calls in `model`'s graph. A nested model's own .input/.output are its inner
    tensors, not the ones `model` feeds it and reads from it."""
    return [
        node
        for i, node in enumerate(layer._inbound_nodes)
        if make_node_key(layer, i) in model._nodes
    ]


def _feature_map_shape(model: keras.Model, layer: keras.Layer) -> tuple | None:
    """The layer's output shape in `model` if it is one 4-D tensor computed once, else None."""
    nodes = _call_nodes(model, layer)
    if isinstance(layer, keras.layers.InputLayer) or len(nodes) != 1:
        return None
    outputs = nodes[0].output_tensors
    return tuple(outputs[0].shape) if len(outputs) == 1 and len(outputs[0].shape) == 4 else None


def default_layer_path(model: keras.Model) -> list[keras.Layer]:
    """The last 4-D output before the classifier; for a nested model (a backbone), its own last
    4-D output, recursively. The path lists the nested models down to the layer."""
    weighted = [i for i, layer in enumerate(model.layers) if layer.weights]
    candidates = model.layers[: weighted[-1]] if weighted else model.layers
    path: list[keras.Layer] = []
    while True:
        maps = [layer for layer in candidates if _feature_map_shape(model, layer)]
        if not maps:
            raise ConfigError(
                f"{model.name} has no 4-D feature map before its classifier; "
                "set explain.layer=<name of a convolutional layer>"
            )
        path.append(maps[-1])
        if not isinstance(maps[-1], keras.Model):
            return path
        model = maps[-1]
        candidates = model.layers


def find_layer_path(model: keras.Model, name: str) -> list[keras.Layer] | None:
    """The nested models down to the layer called `name`, searched depth first."""
    for layer in model.layers:
        if layer.name == name:
            return [layer]
        if isinstance(layer, keras.Model) and (inner := find_layer_path(layer, name)):
            return [layer, *inner]
    return None


def layer_path(model: keras.Model, name: str | None) -> list[keras.Layer]:
    """`explain.layer` (any depth) as a path of layers, or the default feature map."""
    if name is None:
        return default_layer_path(model)
    path = find_layer_path(model, name)
    if path is None:
        default = default_layer_path(model)[-1].name
        raise ConfigError(
            f"explain.layer={name!r} is not a layer of {model.name}; name a convolutional "
            f"layer (see model.summary()), or leave it unset for {default}"
        )
    parent = path[-2] if len(path) > 1 else model
    if _feature_map_shape(parent, path[-1]) is None:
        raise ConfigError(
            f"explain.layer={name!r} does not output one 4-D feature map "
            "(batch, height, width, channels); name a convolutional layer"
        )
    return path


def feature_model(model: keras.Model, path: list[keras.Layer]) -> FeatureModel:
    """images -> (the feature map at the end of `path`, the model's output), in inference mode.

    A map inside a nested model is reached by splitting `model` around that model's call: the
    part before it, the nested model itself (recursively), and the part after it.
    """
    layer, *inner = path
    (node,) = _call_nodes(model, layer)
    if not inner:
        both = keras.Model(_single(model.inputs), [node.output_tensors[0], _single(model.outputs)])
        return lambda images: tuple(both(images, training=False))
    before = keras.Model(_single(model.inputs), _single(node.input_tensors))
    within = feature_model(layer, inner)
    if node.output_tensors == model.outputs:  # the nested model's output is the model's
        after = None
    else:
        try:
            after = keras.Model(_single(node.output_tensors), _single(model.outputs))
        except ValueError as exc:  # "not connected": something reaches the output around it
            raise ConfigError(
                f"explain.layer={path[-1].name} is inside {layer.name}, which {model.name}'s "
                "output does not depend on alone; name a layer outside it"
            ) from exc

    def run(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        feature, nested_output = within(before(images, training=False))
        return feature, nested_output if after is None else after(nested_output, training=False)

    return run


def class_score(outputs: tf.Tensor, class_id: int) -> tf.Tensor:
    """Per image: the class's probability, for segmentation its mean over the pixels. One
    sigmoid unit means [1 - p, p], as tasks.base.class_probabilities reads it."""
    if outputs.shape[-1] == 1:
        probs = outputs[..., 0] if class_id == 1 else 1 - outputs[..., 0]
    else:
        probs = outputs[..., class_id]
    return tf.reduce_mean(tf.reshape(probs, [tf.shape(probs)[0], -1]), axis=1)


class GradCam:
    """Heatmaps of one model at one feature map (`layer`: a layer name, None for the default)."""

    def __init__(self, model: keras.Model, layer: str | None = None) -> None:
        model = float32_model(model)  # gradients of a mixed-precision run in float32
        self.path = layer_path(model, layer)
        self.size = model_image_size(model)
        self.features = feature_model(model, self.path)

    @property
    def layer_name(self) -> str:
        return "/".join(layer.name for layer in self.path)

    def __call__(self, image: np.ndarray, class_id: int | None = None) -> Heatmap:
        """One HxWx3 uint8 image at its own size, resized as training resized it; `class_id`
        None explains the predicted class."""
        batch = tf.cast(resize_image(image[None], self.size), tf.float32)
        with tf.GradientTape() as tape:
            feature, outputs = self.features(batch)
            if class_id is None:
                class_id = int(class_probabilities(outputs.numpy())[0].argmax())
            score = class_score(outputs, class_id)
        grads = tape.gradient(score, feature)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one per channel
        cam = tf.nn.relu(tf.reduce_sum(weights * feature, axis=-1))[0]
        cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam))
        cam = tf.image.resize(cam[..., None], image.shape[:2], method="bilinear")[..., 0]
        return Heatmap(np.clip(cam.numpy(), 0, 1), class_id, float(score[0]))
