"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", 2017): a one-stage detector.

A backbone's stride-8/16/32 features (C3-C5) feed a feature pyramid (P3-P7, `model.fpn_channels`
each); two small heads of `model.head_convs` 3x3 convolutions, shared by every level, predict
per anchor (cvtrain/models/anchors.py) four box offsets and one logit per class. The model
outputs both, float32, as one [batch, anchors, 4 + classes] tensor: the loss trains on it, and
`decode` turns it into boxes, scores and classes with non-max suppression
(tf.image.non_max_suppression_padded: it converts to TFLite and ONNX and takes a batch).

`model.backbone=resnet50|mobilenetv2|efficientnetb0` (with `model.weights=imagenet`) is a
keras.applications network; `none` is a small residual convnet of `model.filters` stages, one
per stride 2..32, that trains from random weights on a CPU.

Written here rather than taken from keras-hub: its RetinaNet predicts only unbatched and at full
batches, not under mixed_float16, refuses compile metrics, its NMS converts to neither TFLite nor
ONNX, and keras-hub would pin TensorFlow through tensorflow-text.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cvtrain.models.anchors import PER_CELL, VARIANCE, anchor_boxes
from cvtrain.models.backbones import load_backbone
from cvtrain.models.blocks import conv_block, scaled
from cvtrain.models.model_config import RetinaNet

PRIOR = 0.01  # the class heads start predicting this probability everywhere (the paper's pi)
FEATURES = ("stride8", "stride16", "stride32")
# Group normalisation in the heads (as in RetinaNet-GN and FCOS): no moving statistics to lag
# behind in a short run, and one head serves levels whose statistics differ.
GROUPS = 16


def small_backbone(x: keras.KerasTensor, filters: list[int]) -> list[keras.KerasTensor]:
    """C3, C4, C5 of a residual convnet: per stage a strided 3x3 convolution and a residual
    pre-activation block (cvtrain/models/blocks.py)."""
    x = layers.Rescaling(1.0 / 255)(x)
    features = []
    for f in filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False)(x)
        x = conv_block(x, f, residual=True)
        features.append(x)
    return features[2:5]


def pyramid(features: list[keras.KerasTensor], channels: int) -> list[keras.KerasTensor]:
    """P3-P7 from C3-C5: lateral 1x1 convolutions, a top-down path, 3x3 smoothing; P6 and P7
    by strided convolutions on C5."""
    c3, c4, c5 = features
    p5 = layers.Conv2D(channels, 1, name="fpn_lateral5")(c5)
    p4 = layers.Add()(
        [layers.Conv2D(channels, 1, name="fpn_lateral4")(c4), layers.UpSampling2D()(p5)]
    )
    p3 = layers.Add()(
        [layers.Conv2D(channels, 1, name="fpn_lateral3")(c3), layers.UpSampling2D()(p4)]
    )
    p3 = layers.Conv2D(channels, 3, padding="same", name="fpn_p3")(p3)
    p4 = layers.Conv2D(channels, 3, padding="same", name="fpn_p4")(p4)
    p5 = layers.Conv2D(channels, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.Conv2D(channels, 3, strides=2, padding="same", name="fpn_p6")(c5)
    p7 = layers.Conv2D(channels, 3, strides=2, padding="same", name="fpn_p7")(layers.ReLU()(p6))
    return [p3, p4, p5, p6, p7]


def head(outputs: int, channels: int, depth: int, bias: float, name: str) -> keras.Sequential:
    """The convolutions one head applies to every level (shared weights)."""
    init = keras.initializers.RandomNormal(stddev=0.01)
    convs = []
    for _ in range(depth):
        convs += [
            layers.Conv2D(channels, 3, padding="same", use_bias=False, kernel_initializer=init),
            layers.GroupNormalization(min(GROUPS, channels)),
            layers.ReLU(),
        ]
    last = layers.Conv2D(
        PER_CELL * outputs,
        3,
        padding="same",
        kernel_initializer=init,
        bias_initializer=keras.initializers.Constant(bias),
    )
    # Any height and width: one head serves every pyramid level.
    return keras.Sequential([keras.Input((None, None, channels)), *convs, last], name=name)


def build(cfg: RetinaNet, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    if cfg.backbone == "none":
        features = small_backbone(inputs, scaled(cfg.filters, cfg.width))
    else:
        backbone = load_backbone(
            cfg.backbone, input_shape, cfg.weights, cfg.freeze_backbone, FEATURES
        )
        features = backbone(inputs)
    levels = pyramid(features, cfg.fpn_channels)
    prior = -math.log((1 - PRIOR) / PRIOR)
    classify = head(num_classes, cfg.fpn_channels, cfg.head_convs, prior, "class_head")
    regress = head(4, cfg.fpn_channels, cfg.head_convs, 0.0, "box_head")
    boxes = layers.Concatenate(axis=1)([layers.Reshape((-1, 4))(regress(p)) for p in levels])
    logits = layers.Concatenate(axis=1)(
        [layers.Reshape((-1, num_classes))(classify(p)) for p in levels]
    )
    outputs = layers.Concatenate(axis=-1, dtype="float32", name="detections")([boxes, logits])
    return keras.Model(inputs, outputs, name="retinanet")


def to_corners(offsets: tf.Tensor, anchors: np.ndarray) -> tf.Tensor:
    """Predicted offsets [..., anchors, 4] -> boxes (x0, y0, x1, y1 as fractions)."""
    size = anchors[:, 2:] - anchors[:, :2]
    centre = anchors[:, :2] + size / 2
    offsets = tf.cast(offsets, tf.float32) * VARIANCE
    xy = centre + offsets[..., :2] * size
    wh = size * tf.exp(tf.minimum(offsets[..., 2:], 8.0))  # an untrained head cannot overflow
    return tf.concat([xy - wh / 2, xy + wh / 2], axis=-1)


def decode(
    outputs: tf.Tensor,
    image_size: tuple[int, int],
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    candidates: int = 1000,
) -> tf.Tensor:
    """The model's [batch, anchors, 4 + classes] outputs as detections [batch, max_detections,
    6]: (x0, y0, x1, y1 as fractions, score, class), best first; rows past the detections found
    have score 0 and class -1. Each anchor proposes its best class; the `candidates` best
    proposals go to non-max suppression, one class apart from another (boxes of different
    classes never suppress each other), computed in float32."""
    outputs = tf.cast(outputs, tf.float32)
    boxes = to_corners(outputs[..., :4], anchor_boxes(image_size))
    probs = tf.sigmoid(outputs[..., 4:])
    scores, classes = tf.reduce_max(probs, -1), tf.argmax(probs, -1, output_type=tf.int32)
    k = min(candidates, int(outputs.shape[1]))
    scores, top = tf.math.top_k(scores, k)
    boxes = tf.gather(boxes, top, batch_dims=1)
    classes = tf.gather(classes, top, batch_dims=1)
    apart = boxes + 2.0 * tf.cast(classes, tf.float32)[..., None]  # classes never overlap
    keep, valid = tf.image.non_max_suppression_padded(
        apart,
        scores,
        max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        pad_to_max_output_size=True,
    )
    found = tf.sequence_mask(valid, max_detections)
    boxes = tf.clip_by_value(tf.gather(boxes, keep, batch_dims=1), 0.0, 1.0)
    scores = tf.where(found, tf.gather(scores, keep, batch_dims=1), 0.0)
    classes = tf.where(found, tf.gather(classes, keep, batch_dims=1), -1)
    boxes = tf.where(found[..., None], boxes, 0.0)
    return tf.concat([boxes, scores[..., None], tf.cast(classes, tf.float32)[..., None]], -1)
