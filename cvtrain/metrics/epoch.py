"""Segmentation's training metrics, all read from one pixel confusion matrix per epoch.

pixel_accuracy, mean_iou and iou_<class> (one per class, so a class never predicted shows as 0
in history.csv and TensorBoard while training). One metric counts [true, predicted] over the
labelled pixels (label >= 0; ignored pixels count nowhere) and the others read its counts, so
every number comes from the same matrix, with the definitions mode=evaluate uses
(cvtrain/metrics/evaluation.py). keras.metrics.MeanIoU is not used: it counts classes absent
from truth and prediction oddly and does not check class ids (keras-team/keras#21907, #22835).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from cvtrain.metrics.evaluation import class_iou_name


def pixel_accuracy(matrix, class_id):
    return ops.divide_no_nan(ops.trace(matrix), ops.sum(matrix))


def class_ious(matrix):
    """Per-class IoU and whether the class occurs in truth or prediction at all."""
    overlap = ops.diagonal(matrix)
    union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - overlap
    return ops.divide_no_nan(overlap, union), ops.cast(union > 0, matrix.dtype)


def mean_iou(matrix, class_id):
    """Mean over the classes present in truth or prediction (Keras's MeanIoU definition)."""
    ious, present = class_ious(matrix)
    return ops.divide_no_nan(ops.sum(ious * present), ops.sum(present))


def class_iou(matrix, class_id):
    """One class's IoU; 0 while the class is in neither truth nor prediction."""
    return class_ious(matrix)[0][class_id]


SCORES = {"pixel_accuracy": pixel_accuracy, "mean_iou": mean_iou, "iou": class_iou}


@keras.saving.register_keras_serializable(package="cvtrain")
class PixelMetric(keras.metrics.Metric):
    """One score (SCORES) of a pixel confusion matrix. Given another metric's `counts`, it reads
    that matrix and counts nothing itself; alone (as a loaded model compiles it) it counts."""

    def __init__(
        self,
        num_classes: int,
        score: str,
        class_id: int | None = None,
        counts: keras.Variable | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes, self.score, self.class_id = num_classes, score, class_id
        self.counting = counts is None
        self.counts = (
            counts
            if counts is not None
            else self.add_variable(
                shape=(num_classes, num_classes),
                initializer="zeros",
                dtype="float32",
                name="counts",
            )
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.counting:
            return
        classes = self.num_classes
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (-1,))
        labelled = (labels >= 0) & (labels < classes)
        cells = ops.where(labelled, labels * classes + predicted, 0)
        found = ops.segment_sum(ops.cast(labelled, "float32"), cells, num_segments=classes**2)
        self.counts.assign_add(ops.reshape(found, (classes, classes)))

    def result(self):
        return SCORES[self.score](ops.convert_to_tensor(self.counts), self.class_id)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "score": self.score,
            "class_id": self.class_id,
        }


def pixel_metrics(class_names: Sequence[str]) -> list[PixelMetric]:
    """pixel_accuracy (which counts), mean_iou and iou_<class> for each class (which read it)."""
    classes = len(class_names)
    counter = PixelMetric(classes, "pixel_accuracy", name="pixel_accuracy")
    shared = dict(num_classes=classes, counts=counter.counts)
    return [
        counter,
        PixelMetric(score="mean_iou", name="mean_iou", **shared),
        *(
            PixelMetric(score="iou", class_id=c, name=class_iou_name(name), **shared)
            for c, name in enumerate(class_names)
        ),
    ]
