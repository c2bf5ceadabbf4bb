"""The tf.data input pipeline: stream files, decode, resize, batch, prefetch.

Images stay uint8 until batching (4x less memory in caches and buffers); the model rescales.
Nothing holds the whole dataset in memory unless `data.cache=memory` asks for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import tensorflow as tf

from cvtrain.config import DataConfig
from cvtrain.data.augment import augment_dataset, is_enabled
from cvtrain.data.index import FileIndex

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER_DECODED = 1024  # cap for shuffling decoded images after a cache


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Any JPEG/PNG/GIF/BMP whatever its extension says, as HxWx3 uint8 at its own size."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """uint8 image(s) to `size` exactly as training saw them (export and predict reuse this).

    Resizing float32 rather than uint8 gives the same values and converts to TFLite builtins.
    """
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def decode_image(path: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Any JPEG/PNG/GIF/BMP whatever its extension says, as HxWx3 uint8 at `size`."""
    return resize_image(read_image(path), size)


def decode_pair(
    image_path: tf.Tensor, mask_path: tf.Tensor, size: tuple[int, int], index: FileIndex
) -> tuple[tf.Tensor, tf.Tensor]:
    """An image and its mask at `size`; an error (so `ignore_errors` drops the sample) if the
    mask's size or values do not fit: training never sees a bad pair, scanned or not."""
    image = read_image(image_path)
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
    ids = tf.cast(mask, tf.int32) - index.mask_offset
    checks = [
        tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(mask)[:2]),
        tf.debugging.assert_non_negative(ids),
        tf.debugging.assert_less(ids, index.num_classes),
    ]
    with tf.control_dependencies(checks):
        ids = tf.image.resize(ids, size, method="nearest")
    return resize_image(image, size), ids


AUTOTUNE_MIN_CORES = 5


def pipeline_options(cfg: DataConfig) -> tf.data.Options:
    """Autotuned parallelism and buffers where there are cores to spare (`data.autotune`);
    `data.deterministic=false` lets parallel maps reorder."""
    options = tf.data.Options()
    if isinstance(cfg.autotune, bool):
        options.autotune.enabled = cfg.autotune
    else:  # auto
        options.autotune.enabled = (os.cpu_count() or 1) >= AUTOTUNE_MIN_CORES
    options.deterministic = cfg.deterministic
    return options


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_samples / batch_size))


def build_dataset(
    index: FileIndex,
    cfg: DataConfig,
    *,
    training: bool,
    seed: int,
    cache_dir: Path | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images 0..255, targets) for `index`.

    Unreadable files that slipped past the index are dropped (`ignore_errors`) instead of
    failing the epoch.
    """
    size = tuple(cfg.image_size)
    targets = list(index.targets)
    ds = tf.data.Dataset.from_tensor_slices((list(index.images), targets))
    if training and cfg.cache == "none":
        ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)

    if index.has_masks:

        def load(path, target):
            return decode_pair(path, target, size, index)
    else:

        def load(path, target):
            return decode_image(path, size), target

    ds = ds.map(load, num_parallel_calls=AUTOTUNE).ignore_errors(log_warning=True)
    if cfg.cache == "memory":
        ds = ds.cache()
    elif cfg.cache == "disk":
        assert cache_dir is not None, "disk cache needs a directory"
        cache_dir.mkdir(parents=True, exist_ok=True)
        # TF reuses any complete cache file: key it by the files and size it holds.
        name = f"{'train' if training else 'val'}-{index.fingerprint()}-{size[0]}x{size[1]}"
        ds = ds.cache(str(cache_dir / name))
    if training and cfg.cache != "none":
        ds = ds.shuffle(min(len(index), SHUFFLE_BUFFER_DECODED), seed=seed)
    ds = ds.batch(cfg.batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and is_enabled(cfg.augment):
        ds = augment_dataset(ds, cfg.augment, seed, with_masks=index.has_masks)
    return ds.prefetch(AUTOTUNE).with_options(pipeline_options(cfg))
