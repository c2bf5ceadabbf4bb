"""What a task means for training: its loss and the metrics it reports."""

from __future__ import annotations

import keras
import numpy as np

from cvtrain.data.index import CLASSIFICATION, SEGMENTATION

# The metric a task's summary table leads with, after val_loss.
MAIN_METRICS = {SEGMENTATION: ("pixel_accuracy", "mean_iou"), CLASSIFICATION: ("accuracy", "auc")}


def loss_and_metrics(task: str, num_classes: int) -> tuple[str, list[keras.metrics.Metric]]:
    if task == SEGMENTATION:
        return "sparse_categorical_crossentropy", [
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
            keras.metrics.MeanIoU(num_classes=num_classes, sparse_y_pred=False, name="mean_iou"),
        ]
    if task == CLASSIFICATION and num_classes == 2:  # one sigmoid unit, as in the book
        return "binary_crossentropy", [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            # Keras bins thresholds; 1000 bins keep the logged AUC close to the exact one.
            keras.metrics.AUC(num_thresholds=1000, name="auc"),
        ]
    if task == CLASSIFICATION:
        return "sparse_categorical_crossentropy", [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ]
    raise NotImplementedError(f"task {task!r} has no loss defined")


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """A model's output as per-class probabilities: one sigmoid unit becomes [1 - p, p]."""
    outputs = np.asarray(outputs, np.float32)
    if outputs.shape[-1] == 1:
        return np.concatenate([1 - outputs, outputs], axis=-1)
    return outputs
