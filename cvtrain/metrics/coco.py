"""Detection scores by the reference COCO evaluation (pycocotools): mAP over IoU 0.50:0.95,
AP at IoU 0.50 and 0.75, and each class's AP, plus AP at 0.50 with classes ignored.

pycocotools' loadRes crashes on an empty list of detections, which early epochs of a detector
trained from random weights produce: that case scores 0 for every class that has objects.
A class without objects in the split has no AP (None), as COCO leaves it out of the mean.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

# Rows of `truths`: x0, y0, x1, y1 (fractions), class (-1 pads); of `detections`: the same
# corners, score, class (-1 pads).
IOU_50, IOU_75 = 0, 5  # positions in COCOeval's thresholds 0.50, 0.55, ..., 0.95
ALL_AREAS, MOST_DETECTIONS = 0, -1  # COCOeval's area range "all", maxDets 100


def _coco_boxes(rows: np.ndarray, size: tuple[int, int]) -> list[tuple[list[float], int]]:
    h, w = size
    return [
        ([x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h], int(cls))
        for x0, y0, x1, y1, cls in rows
        if cls >= 0
    ]


def _precision(
    truths: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    num_classes: int,
    size: tuple[int, int],
    by_class: bool,
) -> np.ndarray | None:
    """COCOeval's precision array [iou, recall, class, area, max dets] (-1: no objects), or
    None when there are no detections at all."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    h, w = size
    images, annotations, results = [], [], []
    for i, (truth, found) in enumerate(zip(truths, detections)):
        images.append({"id": i, "width": w, "height": h})
        for bbox, cls in _coco_boxes(truth, size):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cls,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        for row in found[found[:, 5] >= 0]:
            (bbox, cls), score = _coco_boxes(row[None, [0, 1, 2, 3, 5]], size)[0], row[4]
            results.append({"image_id": i, "category_id": cls, "bbox": bbox, "score": float(score)})
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in range(num_classes)],
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.useCats = int(by_class)
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation.eval["precision"]


def _mean(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def coco_scores(
    truths: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    class_names: Sequence[str],
    size: tuple[int, int],
) -> dict:
    """map, map50, map75, map50_any_class and per_class {name: {ap, ap50}} of one split (boxes
    measured in pixels of `size`, the model's input: (height, width))."""
    num_classes = len(class_names)
    has_objects = np.zeros(num_classes, bool)
    for truth in truths:
        has_objects[truth[truth[:, 4] >= 0, 4].astype(int)] = True
    precision = _precision(truths, detections, num_classes, size, by_class=True)
    agnostic = _precision(truths, detections, num_classes, size, by_class=False)
    if precision is None:  # no detections: zero AP wherever there is something to find
        zero = 0.0 if has_objects.any() else None
        per_class = {
            name: {"ap": 0.0 if has else None, "ap50": 0.0 if has else None}
            for name, has in zip(class_names, has_objects)
        }
        return {
            "map": zero,
            "map50": zero,
            "map75": zero,
            "map50_any_class": zero,
            "per_class": per_class,
        }
    at = precision[..., ALL_AREAS, MOST_DETECTIONS]  # [iou, recall, class]
    return {
        "map": _mean(at),
        "map50": _mean(at[IOU_50]),
        "map75": _mean(at[IOU_75]),
        "map50_any_class": _mean(agnostic[IOU_50, :, :, ALL_AREAS, MOST_DETECTIONS]),
        "per_class": {
            name: {"ap": _mean(at[:, :, k]), "ap50": _mean(at[IOU_50, :, k])}
            for k, name in enumerate(class_names)
        },
    }
