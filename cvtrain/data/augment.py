"""The chapter's data augmentation (horizontal flip, rotation, zoom) and translation, as a
tf.data step.

It runs on training batches only, so the model itself stays XLA-compilable and inference never
sees it. All the transforms are folded into one affine map per image and applied by one
ImageProjectiveTransformV3 op with reflected borders, like keras' RandomRotation/RandomZoom.
Randomness is stateless, drawn from a per-batch seed, so a run is repeatable under its seed.
A segmentation mask gets the same geometry with nearest-neighbour sampling (labels stay exact).
Boxes get it too: each box becomes the box around its moved corners, clipped to the image, and
a box mostly pushed out of the image is dropped; their images are filled with black beyond
the border instead of reflected, as a reflected object would have no box.
"""

from __future__ import annotations

import math

import tensorflow as tf

from cvtrain.config.schema import AugmentConfig
from cvtrain.tasks.specs import BOXES, MASKS


def is_enabled(cfg: AugmentConfig) -> bool:
    return cfg.flip or cfg.rotation > 0 or cfg.zoom > 0 or cfg.translation > 0


def random_transforms(cfg: AugmentConfig, batch: tf.Tensor, height, width, seed: tf.Tensor):
    """[batch, 8] projective transforms mapping output pixels to input pixels."""
    flip_seed, angle_seed, zoom_seed = tf.unstack(tf.random.split(seed, 3))
    shift_seed = tf.random.experimental.stateless_fold_in(seed, 3)  # the others as before it
    ones = tf.ones([batch])
    flip = tf.random.stateless_uniform([batch], flip_seed) < 0.5 if cfg.flip else ones < 0
    sign = tf.where(flip, -ones, ones)
    turn = cfg.rotation * 2 * math.pi  # keras' factor: a fraction of a full turn
    angle = tf.random.stateless_uniform([batch], angle_seed, -turn, turn)
    zoom = tf.random.stateless_uniform([batch], zoom_seed, 1 - cfg.zoom, 1 + cfg.zoom)
    cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    cx = tf.cast(width - 1, tf.float32) / 2
    cy = tf.cast(height - 1, tf.float32) / 2
    shift = tf.random.stateless_uniform([batch, 2], shift_seed, -cfg.translation, cfg.translation)
    # input = centre + zoom * rotation @ flip @ (output - centre) + shift * size
    a0, a1, b0, b1 = cos * sign, -sin, sin * sign, cos
    zeros = tf.zeros([batch])
    a2 = cx - a0 * cx - a1 * cy + shift[:, 0] * tf.cast(width, tf.float32)
    b2 = cy - b0 * cx - b1 * cy + shift[:, 1] * tf.cast(height, tf.float32)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _warp(images: tf.Tensor, transforms: tf.Tensor, interpolation: str, fill: str) -> tf.Tensor:
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode=fill,
    )


KEPT_AREA = 0.4  # a moved box keeps its object if at least this share of it is inside the image


def move_boxes(boxes: tf.Tensor, transforms: tf.Tensor, height, width) -> tf.Tensor:
    """Padded boxes [B, N, 5] (x0, y0, x1, y1 as fractions, class; -1 pads) under `transforms`:
    the box around each box's four moved corners, clipped; dropped (class -1) when less than
    KEPT_AREA of it is left inside the image."""
    w, h = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
    x0, y0, x1, y1, cls = tf.unstack(boxes, axis=-1)
    # Corners in pixel-centre coordinates, the transform's own (an edge at e is centre e - 0.5).
    xs = tf.stack([x0, x1, x0, x1], -1) * w - 0.5
    ys = tf.stack([y0, y0, y1, y1], -1) * h - 0.5
    a0, a1, a2, b0, b1, b2 = (transforms[:, i, None, None] for i in range(6))
    # The transform maps output to input pixels; boxes move from input to output: invert it.
    det = a0 * b1 - a1 * b0
    dx, dy = xs - a2, ys - b2
    out_x = (b1 * dx - a1 * dy) / det + 0.5
    out_y = (a0 * dy - b0 * dx) / det + 0.5
    moved = [
        tf.reduce_min(out_x, -1) / w,
        tf.reduce_min(out_y, -1) / h,
        tf.reduce_max(out_x, -1) / w,
        tf.reduce_max(out_y, -1) / h,
    ]
    clipped = [tf.clip_by_value(v, 0.0, 1.0) for v in moved]
    area = (moved[2] - moved[0]) * (moved[3] - moved[1])
    inside = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
    keep = (cls >= 0) & (inside > KEPT_AREA * area) & (clipped[2] > clipped[0])
    keep &= clipped[3] > clipped[1]
    cls = tf.where(keep, cls, -tf.ones_like(cls))
    return tf.stack([tf.where(keep, v, tf.zeros_like(v)) for v in clipped] + [cls], axis=-1)


def augment_batch(
    cfg: AugmentConfig,
    images: tf.Tensor,
    masks: tf.Tensor | None,
    seed: tf.Tensor,
    boxes: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Randomly flipped/rotated/zoomed/shifted float images [B,H,W,C], and with them int masks
    [B,H,W,1] or padded boxes [B,N,5] (returned in the second place).

    `seed` is a shape-[2] integer tensor; the same seed gives the same transforms.
    """
    shape = tf.shape(images)
    transforms = random_transforms(cfg, shape[0], shape[1], shape[2], seed)
    images = _warp(images, transforms, "BILINEAR", "REFLECT" if boxes is None else "CONSTANT")
    if boxes is not None:
        return images, move_boxes(boxes, transforms, shape[1], shape[2])
    if masks is not None:
        masks = _warp(masks, transforms, "NEAREST", "REFLECT")
    return images, masks


def augment_dataset(
    ds: tf.data.Dataset, cfg: AugmentConfig, seed: int, targets: str
) -> tf.data.Dataset:
    """Augment each (images, targets) batch of `ds`; `targets` says what they are
    (cvtrain.tasks.specs: masks and boxes move with the images, labels do not).

    Seeds come from a seeded random stream that differs per epoch but repeats across runs.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def apply(batch, batch_seed):
        images, y = batch
        if targets == MASKS:
            return augment_batch(cfg, images, y, batch_seed)
        if targets == BOXES:
            return augment_batch(cfg, images, None, batch_seed, boxes=y)
        return augment_batch(cfg, images, None, batch_seed)[0], y

    return tf.data.Dataset.zip(ds, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE)
