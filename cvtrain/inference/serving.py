"""Raw uint8 images of any size -> class probabilities: the path predict and exports share.

Images are resized exactly as the training pipeline resizes them; segmentation probabilities
are resized back to each input's own size, so a mask lines up with the photo it came from.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cvtrain.data.pipeline import resize_image

RAW_IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def _float32_config(node):
    """A serialized model with mixed-precision policies and half-precision dtypes as float32."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and node["config"]["name"].startswith("mixed_"):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {
            k: "float32" if k == "dtype" and v in ("float16", "bfloat16") else _float32_config(v)
            for k, v in node.items()
        }
    if isinstance(node, (list, tuple)):
        return type(node)(_float32_config(v) for v in node)
    return node


def float32_model(model: keras.Model) -> keras.Model:
    """The same weights computing in float32. A mixed-precision run (the GPU default) has float16
    ops, which TFLite builtins lack and CPUs run slowly; its weights are float32 already."""
    config = keras.saving.serialize_keras_object(model)
    converted = _float32_config(config)
    if converted == config:
        return model
    clone = keras.saving.deserialize_keras_object(converted)
    clone.set_weights(model.get_weights())
    return clone


def model_image_size(model: keras.Model) -> tuple[int, int]:
    return int(model.input_shape[1]), int(model.input_shape[2])


def raw_predictor(model: keras.Model, segmentation: bool) -> tf.types.experimental.Function:
    """A tf.function: uint8 [batch, H, W, 3] -> probabilities, per pixel at H x W if
    `segmentation` (a task with dense outputs: Task.dense)."""
    size = model_image_size(model)

    @tf.function(input_signature=[RAW_IMAGES])
    def predict_raw(images: tf.Tensor) -> tf.Tensor:
        probs = model(tf.cast(resize_image(images, size), tf.float32), training=False)
        if segmentation:
            probs = tf.image.resize(probs, tf.shape(images)[1:3], method="bilinear")
        return probs

    return predict_raw
