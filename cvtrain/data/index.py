"""The file index: which files make up a dataset, and the seeded train/validation split.

Everything here is pure Python so that bad data and bad split settings are reported before
TensorFlow is imported.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cvtrain.errors import ConfigError
from cvtrain.tasks.specs import BOXES, SPECS

# The class id of a mask pixel that no loss or metric counts (data.ignore_index): masks in the
# pipeline hold class ids 0..C-1 and IGNORED only.
IGNORED = -1

# Leading bytes of the formats tf.io.decode_image reads, whatever the file extension says.
_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"BM": "bmp",
}
# Markers a complete file of the format has near its end (a little trailing padding is allowed):
# a truncated download or copy lacks them and would only fail later, inside tf.data.
_TRAILERS = {"jpeg": b"\xff\xd9", "png": b"IEND"}
_TAIL_BYTES = 1024


def sniff_image(path: str | Path) -> str | None:
    """The real format of an image file from its bytes, or None if it is not one or truncated."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            kind = next((k for magic, k in _SIGNATURES.items() if head.startswith(magic)), None)
            if kind in _TRAILERS:
                f.seek(max(0, f.seek(0, 2) - _TAIL_BYTES))
                if _TRAILERS[kind] not in f.read():
                    return None
    except OSError:
        return None
    return kind


def class_id(value: str | None, class_names: Sequence[str], key: str) -> int | None:
    """A class given on the command line (`key=value`) by name (border) or by id (2)."""
    if value is None:
        return None
    if value in class_names:
        return list(class_names).index(value)
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    raise ConfigError(
        f"{key}={value!r} is not a class of this dataset; "
        f"use one of {', '.join(class_names)} (or its id 0..{len(class_names) - 1})"
    )


@dataclass(frozen=True)
class FileIndex:
    """Image paths and their targets: mask paths (segmentation), integer labels
    (classification) or boxes (detection: a tuple of (class id, x0, y0, x1, y1) per image, the
    corners as fractions of the image's width and height, cvtrain.data.boxes)."""

    task: str
    images: tuple[str, ...]
    targets: tuple
    class_names: tuple[str, ...]
    root: str = ""
    # Masks: the stored value of each class, in class order (empty = 0..C-1), and a stored value
    # that is no class (ignored: -1 in the pipeline, scored by nothing).
    mask_values: tuple[int, ...] = ()
    ignore_value: int | None = None
    # Per-sample "train"/"validation"/"test" when the dataset comes split; empty = seeded split.
    subsets: tuple[str, ...] = ()
    # Label problems found while indexing, (label file, kind, detail): a bad box is left out of
    # its image's targets, an image whose label file is unusable out of the index. The data scan
    # lists them with the files it finds bad.
    label_problems: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        assert len(self.images) == len(self.targets), "one target per image"
        assert not self.subsets or len(self.subsets) == len(self.images), "one subset per image"

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_masks(self) -> bool:
        """Targets are label images: decoded, augmented and verified as images."""
        return SPECS[self.task].dense

    @property
    def has_boxes(self) -> bool:
        """Targets are boxes: padded to data.max_boxes in the pipeline, moved by augmentation."""
        return SPECS[self.task].targets == BOXES

    @property
    def class_values(self) -> tuple[int, ...]:
        """The stored mask value of each class, in class order."""
        return self.mask_values or tuple(range(self.num_classes))

    @property
    def mask_offset(self) -> int | None:
        """The value of class 0 when the classes are stored as consecutive values, else None."""
        first = self.class_values[0]
        return first if self.class_values == tuple(range(first, first + self.num_classes)) else None

    def take(self, order: Sequence[int]) -> FileIndex:
        return replace(
            self,
            images=tuple(self.images[i] for i in order),
            targets=tuple(self.targets[i] for i in order),
            subsets=tuple(self.subsets[i] for i in order) if self.subsets else (),
        )

    def joined(self, other: FileIndex) -> FileIndex:
        """Both indexes' samples in one (a whole split: scanned, or evaluated as eval.split=all)."""
        both = self.subsets and other.subsets
        return replace(
            self,
            images=self.images + other.images,
            targets=self.targets + other.targets,
            subsets=self.subsets + other.subsets if both else (),
        )

    def fingerprint(self) -> str:
        """Stable hash of the file list and targets (relative to root): same data, same hash."""
        h = hashlib.sha256()
        for image, target in zip(self.images, self.targets):
            h.update(_relative(image, self.root).encode())
            h.update(b"\0")
            h.update(_relative(str(target), self.root).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/") if root and path.startswith(root) else path


@dataclass(frozen=True)
class Split:
    train: FileIndex
    val: FileIndex
    test: FileIndex | None = None  # only a dataset that comes split has one


def split_index(
    index: FileIndex,
    *,
    val_samples: int | None = None,
    val_fraction: float | None = None,
    seed: int = 1337,
    limit: int | None = None,
) -> Split:
    """The chapter's split: shuffle with a fixed seed, the last `val_samples` are validation.

    `limit` keeps the first N samples of the shuffled order, so a quick run still sees every
    class rather than the alphabetically first ones. A dataset that comes split is used as given
    (its test samples are held out of training, for `eval.split=test`), and the val settings
    are ignored.
    """
    order = list(range(len(index)))
    random.Random(seed).shuffle(order)
    if limit is not None:
        order = order[:limit]
    if index.subsets:
        return _given_split(index, order)
    n = len(order)
    if val_fraction is not None:
        n_val = max(1, round(n * val_fraction))
        key = f"data.val_fraction={val_fraction}"
    else:
        assert val_samples is not None
        n_val = val_samples
        key = f"data.val_samples={val_samples}"
    if n_val >= n:
        raise ConfigError(
            f"{key} leaves no training data: the dataset has {n} samples"
            f"{' after data.limit' if limit is not None else ''}; use a smaller value"
        )
    return Split(train=index.take(order[: n - n_val]), val=index.take(order[n - n_val :]))


def _given_split(index: FileIndex, order: list[int]) -> Split:
    train = [i for i in order if index.subsets[i] == "train"]
    val = [i for i in order if index.subsets[i] == "validation"]
    if not train or not val:
        raise ConfigError(
            f"{index.root} comes split but has {len(train)} train and {len(val)} validation "
            "samples (after data.limit); both need at least one"
        )
    test = [i for i in order if index.subsets[i] == "test"]
    return Split(index.take(train), index.take(val), index.take(test) if test else None)
