"""RetinaNet's anchors and box coding, from the image size alone (NumPy, no TensorFlow).

The model (cvtrain/models/retinanet.py) outputs, for every anchor in this order, four box
offsets and one logit per class; its loss (cvtrain/losses/anchorwise.py) encodes the true boxes
against these anchors and the task decodes predictions with them, so the three agree because
they all call `anchor_boxes`. Pyramid levels 3..7 have strides 8..128; an image side divisible
by 32 gives every level ceil(side / stride) cells, which the model's convolutions match.
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = (3, 4, 5, 6, 7)
SIZE_PER_STRIDE = 4  # an anchor's side at scale 1 is 4 strides: 32 px on level 3
SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
ASPECTS = (0.5, 1.0, 2.0)  # height / width
PER_CELL = len(SCALES) * len(ASPECTS)
# Offsets are divided by these (center x, y; log width, height), as in the paper's code, so the
# box loss sees values of about unit size.
VARIANCE = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
SIDE_MULTIPLE = 2 ** (LEVELS[2])  # the backbone's deepest stride: feature sizes stay exact


def level_sizes(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(rows, columns) of the feature map of every level."""
    h, w = image_size
    return [(math.ceil(h / 2**level), math.ceil(w / 2**level)) for level in LEVELS]


def anchor_boxes(image_size: tuple[int, int]) -> np.ndarray:
    """[anchors, 4] float32 (x0, y0, x1, y1 as fractions of the image), level by level, row by
    row, cell by cell, PER_CELL anchors a cell (scales, then aspects)."""
    h, w = image_size
    out = []
    for level, (rows, cols) in zip(LEVELS, level_sizes(image_size)):
        stride = 2**level
        shapes = [
            (SIZE_PER_STRIDE * stride * scale / math.sqrt(aspect),  # width
             SIZE_PER_STRIDE * stride * scale * math.sqrt(aspect))  # height
            for scale in SCALES
            for aspect in ASPECTS
        ]  # fmt: skip
        cy, cx = np.meshgrid(
            (np.arange(rows) + 0.5) * stride, (np.arange(cols) + 0.5) * stride, indexing="ij"
        )
        centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)
        half = np.array(shapes).reshape(1, -1, 2) / 2
        boxes = np.concatenate([centres - half, centres + half], -1).reshape(-1, 4)
        out.append(boxes / [w, h, w, h])
    return np.concatenate(out).astype(np.float32)


def num_anchors(image_size: tuple[int, int]) -> int:
    return PER_CELL * sum(rows * cols for rows, cols in level_sizes(image_size))
