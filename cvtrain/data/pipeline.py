"""The tf.data input pipeline: stream files, decode, resize, batch, prefetch.

Images stay uint8 until batching (4x less memory in caches and buffers); the model rescales.
Nothing holds the whole dataset in memory unless `data.cache=memory` asks for it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from cvtrain.config.schema import DataConfig
from cvtrain.data.augment import augment_dataset, is_enabled
from cvtrain.data.index import IGNORED, FileIndex
from cvtrain.data.source_config import MAX_MASK_VALUE
from cvtrain.tasks.specs import SPECS

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


UNMAPPED = -2  # a stored value that is neither a class's nor the ignored one
_PNG_COLOUR_TYPE = 25  # byte offset of the colour type in a PNG (IHDR is always first)
_PNG_PALETTE = b"\x03"
_PNG_BIT_DEPTH = 24  # byte offset of the bit depth
_PNG_16_BITS = b"\x10"


def _palette_indices(contents: np.ndarray) -> np.ndarray:
    """A palette PNG's indices as HxWx1 int32 (`contents`: the file's bytes, as numpy sees them)."""
    with Image.open(io.BytesIO(np.asarray(contents).item())) as mask:
        return np.asarray(mask, np.int32)[..., None]


def read_mask(path: tf.Tensor) -> tf.Tensor:
    """A mask's stored values as HxWx1 int32. TensorFlow decodes a palette PNG to its colours
    (and channels=1 to their gray levels), so palette PNGs are read as their indices by PIL;
    a 16-bit PNG is read as 16 bits (decoded as uint8 its values would shrink to v >> 8)."""
    contents = tf.io.read_file(path)
    palette = tf.strings.substr(contents, _PNG_COLOUR_TYPE, 1) == _PNG_PALETTE
    sixteen_bit = tf.strings.substr(contents, _PNG_BIT_DEPTH, 1) == _PNG_16_BITS
    mask = tf.cond(
        palette,
        lambda: tf.numpy_function(_palette_indices, [contents], tf.int32, stateful=False),
        lambda: tf.cond(
            sixteen_bit,
            lambda: tf.cast(tf.io.decode_png(contents, channels=1, dtype=tf.uint16), tf.int32),
            lambda: tf.cast(tf.io.decode_png(contents, channels=1), tf.int32),
        ),
    )
    mask.set_shape([None, None, 1])
    return mask


def mask_table(values: int | Sequence[int], ignore: int | None = None) -> tf.Tensor:
    """stored value -> class id: the position of the value in `values` (an int: the value of
    class 0, the others following), IGNORED for `ignore`, UNMAPPED for any other value."""
    if isinstance(values, int):
        values = range(values, MAX_MASK_VALUE + 1)
    table = np.full(MAX_MASK_VALUE + 1, UNMAPPED, np.int32)
    table[list(values)] = np.arange(len(values))
    if ignore is not None:
        table[ignore] = IGNORED
    return tf.constant(table)


def class_ids(mask: tf.Tensor, values: int | Sequence[int], ignore: int | None = None) -> tf.Tensor:
    """Stored mask values as int32 class ids (mask_table); an error for any unmapped value, so
    that `ignore_errors` drops the sample, whatever a resize would have kept of it."""
    ids = tf.gather(mask_table(values, ignore), mask)  # a value past the table is an error too
    mapped = tf.debugging.assert_none_equal(ids, UNMAPPED, message="mask value not mapped")
    with tf.control_dependencies([mapped]):
        return tf.identity(ids)


def decode_pair(
    image_path: tf.Tensor, mask_path: tf.Tensor, size: tuple[int, int], index: FileIndex
) -> tuple[tf.Tensor, tf.Tensor]:
    """An image (uint8) and its mask (class ids, nearest-neighbour resize keeps them exact) at
    `size`. A mask of another size than its image, or storing an unmapped value, is an error
    (dropped by `ignore_errors`): training never sees a bad pair, scanned or not."""
    image, mask = read_image(image_path), read_mask(mask_path)
    same = tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(mask)[:2], message="mask size")
    with tf.control_dependencies([same]):
        ids = class_ids(mask, index.class_values, index.ignore_value)
    return resize_image(image, size), tf.image.resize(ids, size, method="nearest")


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


PAD_CLASS = -1  # the class of a padding row in a padded box array


def padded_boxes(targets: Sequence[Sequence[Sequence[float]]], max_boxes: int) -> np.ndarray:
    """Each image's boxes (class, x0, y0, x1, y1) as rows (x0, y0, x1, y1, class) of one
    [images, max_boxes, 5] float32 array, padded with class PAD_CLASS: tf.data batches
    fixed shapes. Boxes past `max_boxes` are left out (data.max_boxes)."""
    padded = np.zeros((len(targets), max_boxes, 5), np.float32)
    padded[..., 4] = PAD_CLASS
    for i, boxes in enumerate(targets):
        for j, (cls, *corners) in enumerate(boxes[:max_boxes]):
            padded[i, j] = (*corners, cls)
    return padded


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
    failing the epoch, and so are masks of the wrong size or storing a value outside the
    mapping: masks hold class ids 0..C-1 and IGNORED (-1) only. Boxes come padded
    (padded_boxes).
    """
    size = tuple(cfg.image_size)
    targets = padded_boxes(index.targets, cfg.max_boxes) if index.has_boxes else list(index.targets)
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
        ds = augment_dataset(ds, cfg.augment, seed, SPECS[index.task].targets)
    return ds.prefetch(AUTOTUNE).with_options(pipeline_options(cfg))
