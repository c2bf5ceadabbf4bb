"""loss.class_weights: none, balanced (from the training masks' pixel counts) or one per class.

balanced is inverse frequency, scaled so that the mean weight over the training pixels is 1:
w_c = N / (K n_c) for the K classes with pixels (n_c of N). Median-frequency balancing gives the
same ratios (both are proportional to 1 / n_c); this scale keeps a weighted loss the size of the
unweighted one, so optimizer.lr and the losses in history.csv keep their meaning. A class
without training pixels gets 0: there is nothing to learn it from.

The masks are counted at their stored size with PIL (no TensorFlow; the pipeline's
nearest-neighbour resize keeps the proportions up to rounding), in parallel, and the counts are
cached by the files' fingerprint as the data verification is, so only the first run reads them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cvtrain import rundir
from cvtrain.data.index import FileIndex
from cvtrain.data.verify import fingerprint, mask_values
from cvtrain.errors import ConfigError
from cvtrain.paths import data_cache_dir

if TYPE_CHECKING:
    from cvtrain.config.schema import LossConfig


def check(cfg: LossConfig, class_names: Sequence[str]) -> None:
    """A list of weights must have one per class (before TensorFlow loads: mode=train)."""
    weights = cfg.class_weights
    if isinstance(weights, list) and len(weights) != len(class_names):
        raise ConfigError(
            f"loss.class_weights={weights} has {len(weights)} weights but the data has "
            f"{len(class_names)} classes ({', '.join(class_names)}); give one per class, in "
            "that order"
        )


def resolve(cfg: LossConfig, train: FileIndex) -> tuple[float, ...] | None:
    """The weights the loss gets (None: unweighted), one per class of `train`."""
    check(cfg, train.class_names)
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        return balanced(pixel_counts(train))
    return tuple(cfg.class_weights)


def balanced(counts: Sequence[int]) -> tuple[float, ...]:
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return tuple(round(float(w), 6) for w in weights)


def pixel_counts(index: FileIndex) -> np.ndarray:
    """Pixels of each class in the masks of `index` (ignored and out-of-range values left out)."""
    cache = data_cache_dir() / "class_pixels" / f"{fingerprint(index, [])}.json"
    if cache.is_file():
        return np.asarray(rundir.read_json(cache), np.int64)
    count = partial(mask_counts, values=index.class_values)
    with ThreadPoolExecutor(min(32, 2 * (os.cpu_count() or 2))) as pool:
        per_mask = pool.map(count, map(str, index.targets))
        counts = sum(per_mask, np.zeros(index.num_classes, np.int64))
    rundir.write_json(cache, counts.tolist())
    return counts


def mask_counts(path: str, values: Sequence[int]) -> np.ndarray:
    """One mask's pixels per class (class c is stored as values[c]; other values, the ignored
    one included, count nothing); an unreadable mask counts nothing (the pipeline drops it)."""
    try:
        with Image.open(path) as mask:
            stored = np.bincount(mask_values(mask).astype(np.int64).ravel())
    except (OSError, ValueError):
        return np.zeros(len(values), np.int64)
    return np.array([stored[v] if v < len(stored) else 0 for v in values], np.int64)
