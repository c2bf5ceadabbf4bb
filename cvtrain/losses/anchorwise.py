"""RetinaNet's loss: focal loss on the classes of every anchor, smooth L1 on the boxes of the
anchors that match an object, per image divided by its number of matched anchors.

The true boxes come padded ([batch, max_boxes, 5]: x0, y0, x1, y1, class; class -1 pads,
cvtrain.data.pipeline.padded_boxes); they are matched to the anchors here, in the graph, so the
input pipeline stays the same for every detector and augmentation moves plain boxes. An anchor
overlapping an object by IoU >= 0.5 learns it, one below 0.4 learns background, the ones in
between learn nothing; each object's best anchor learns it whatever its IoU, so an object
between anchor shapes is never left without one.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cvtrain.models.anchors import VARIANCE, anchor_boxes

POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.4


def iou(anchors: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """IoU of anchors [A, 4] with boxes [B, M, 4] (corners) -> [B, A, M]."""
    a = anchors[None, :, None, :]
    b = boxes[:, None, :, :]
    wh = tf.maximum(tf.minimum(a[..., 2:], b[..., 2:]) - tf.maximum(a[..., :2], b[..., :2]), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / tf.maximum(area_a + area_b - inter, 1e-9)


def match(anchors: tf.Tensor, truth: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """For each anchor: the index of its object [B, A], whether it learns it, whether it learns
    background (neither: ignored)."""
    valid = truth[..., 4] >= 0  # [B, M]
    overlaps = tf.where(valid[:, None, :], iou(anchors, truth[..., :4]), -1.0)  # [B, A, M]
    best_object = tf.argmax(overlaps, -1, output_type=tf.int32)
    best_iou = tf.reduce_max(overlaps, -1)
    # Each object's best anchor, forced to learn it.
    best_anchor = tf.argmax(overlaps, 1, output_type=tf.int32)  # [B, M]
    forced = tf.one_hot(best_anchor, tf.shape(anchors)[0]) * tf.cast(valid, tf.float32)[..., None]
    is_forced = tf.reduce_max(forced, 1) > 0  # [B, A]
    objects = tf.where(is_forced, tf.argmax(forced, 1, output_type=tf.int32), best_object)
    positive = (best_iou >= POSITIVE_IOU) | is_forced
    negative = (best_iou < NEGATIVE_IOU) & ~positive
    return objects, positive, negative


def encode(anchors: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """Boxes [B, A, 4] as offsets from their anchors (the inverse of retinanet.to_corners)."""
    size = anchors[:, 2:] - anchors[:, :2]
    centre = anchors[:, :2] + size / 2
    box_size = tf.maximum(boxes[..., 2:] - boxes[..., :2], 1e-6)
    box_centre = boxes[..., :2] + box_size / 2
    offsets = tf.concat([(box_centre - centre) / size, tf.math.log(box_size / size)], -1)
    return offsets / VARIANCE


@keras.saving.register_keras_serializable("cvtrain")
class RetinaNetLoss(keras.losses.Loss):
    """`image_size` fixes the anchors; `gamma` is the focal loss's (loss.gamma)."""

    def __init__(
        self,
        image_size: tuple[int, int],
        num_classes: int,
        gamma: float = 2.0,
        alpha: float = 0.25,
        delta: float = 1.0,
        name: str = "retinanet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.image_size, self.num_classes = tuple(image_size), num_classes
        self.gamma, self.alpha, self.delta = gamma, alpha, delta
        self.anchors = tf.constant(anchor_boxes(self.image_size))

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        truth, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
        objects, positive, negative = match(self.anchors, truth)
        matched = tf.gather(truth, objects, batch_dims=1)  # [B, A, 5]
        positives = tf.cast(positive, tf.float32)
        per_image = tf.maximum(tf.reduce_sum(positives, -1), 1.0)

        classes = tf.one_hot(tf.cast(matched[..., 4], tf.int32), self.num_classes)
        classes *= positives[..., None]  # background anchors learn all zeros
        logits = y_pred[..., 4:]
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=classes, logits=logits)
        p = tf.sigmoid(logits)
        p_true = classes * p + (1 - classes) * (1 - p)
        alpha = classes * self.alpha + (1 - classes) * (1 - self.alpha)
        focal = tf.reduce_sum(alpha * (1 - p_true) ** self.gamma * ce, -1)
        learns = tf.cast(positive | negative, tf.float32)
        class_loss = tf.reduce_sum(focal * learns, -1)

        offsets = encode(self.anchors, matched[..., :4])
        error = tf.abs(offsets - y_pred[..., :4])
        smooth_l1 = tf.where(
            error < self.delta, 0.5 * error**2 / self.delta, error - 0.5 * self.delta
        )
        box_loss = tf.reduce_sum(tf.reduce_sum(smooth_l1, -1) * positives, -1)
        return (class_loss + box_loss) / per_image

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": list(self.image_size),
            "num_classes": self.num_classes,
            "gamma": self.gamma,
            "alpha": self.alpha,
            "delta": self.delta,
        }
