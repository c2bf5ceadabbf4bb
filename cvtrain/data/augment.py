"""The chapter's data augmentation (horizontal flip, rotation, zoom), as a tf.data step.

It runs on training batches only, so the model itself stays XLA-compilable and inference never
sees it. All three transforms are folded into one affine map per image and applied by one
ImageProjectiveTransformV3 op with reflected borders, like keras' RandomRotation/RandomZoom.
Randomness is stateless, drawn from a per-batch seed, so a run is repeatable under its seed.
A segmentation mask gets the same geometry with nearest-neighbour sampling (labels stay exact).
"""

from __future__ import annotations

import math

import tensorflow as tf

from cvtrain.config.schema import AugmentConfig


def is_enabled(cfg: AugmentConfig) -> bool:
    return cfg.flip or cfg.rotation > 0 or cfg.zoom > 0


def random_transforms(cfg: AugmentConfig, batch: tf.Tensor, height, width, seed: tf.Tensor):
    """[batch, 8] projective transforms mapping output pixels to input pixels."""
    flip_seed, angle_seed, zoom_seed = tf.unstack(tf.random.split(seed, 3))
    ones = tf.ones([batch])
    flip = tf.random.stateless_uniform([batch], flip_seed) < 0.5 if cfg.flip else ones < 0
    sign = tf.where(flip, -ones, ones)
    turn = cfg.rotation * 2 * math.pi  # keras' factor: a fraction of a full turn
    angle = tf.random.stateless_uniform([batch], angle_seed, -turn, turn)
    zoom = tf.random.stateless_uniform([batch], zoom_seed, 1 - cfg.zoom, 1 + cfg.zoom)
    cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    cx = tf.cast(width - 1, tf.float32) / 2
    cy = tf.cast(height - 1, tf.float32) / 2
    # input = centre + zoom * rotation @ flip @ (output - centre)
    a0, a1, b0, b1 = cos * sign, -sin, sin * sign, cos
    zeros = tf.zeros([batch])
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _warp(images: tf.Tensor, transforms: tf.Tensor, interpolation: str) -> tf.Tensor:
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="REFLECT",
    )


def augment_batch(
    cfg: AugmentConfig, images: tf.Tensor, masks: tf.Tensor | None, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Randomly flipped/rotated/zoomed float images [B,H,W,C] (and int masks [B,H,W,1]).

    `seed` is a shape-[2] integer tensor; the same seed gives the same transforms.
    """
    shape = tf.shape(images)
    transforms = random_transforms(cfg, shape[0], shape[1], shape[2], seed)
    images = _warp(images, transforms, "BILINEAR")
    if masks is not None:
        masks = _warp(masks, transforms, "NEAREST")
    return images, masks


def augment_dataset(
    ds: tf.data.Dataset, cfg: AugmentConfig, seed: int, with_masks: bool
) -> tf.data.Dataset:
    """Augment each (images, targets) batch of `ds`; targets are masks if `with_masks`.

    Seeds come from a seeded random stream that differs per epoch but repeats across runs.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def apply(batch, batch_seed):
        images, targets = batch
        images, masks = augment_batch(cfg, images, targets if with_masks else None, batch_seed)
        return images, masks if with_masks else targets

    return tf.data.Dataset.zip(ds, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE)
