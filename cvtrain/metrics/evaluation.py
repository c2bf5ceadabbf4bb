"""Evaluation metrics from confusion matrices, in NumPy (no TensorFlow, no scikit-learn).

Segmentation keeps one pixel confusion matrix per model and adds to it batch by batch, so a
split of any size is scored without holding its predictions. The definitions match the Keras
metrics training logs (SparseCategoricalAccuracy, MeanIoU), so a checkpoint evaluated on its
own validation split reproduces its logged val_ metrics.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from cvtrain.tasks.base import classifier_units

EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] in its cross-entropies
CLASS_IOU = "iou_"  # training logs each class's IoU as iou_<class>: val_iou_border


def class_iou_name(class_name: str) -> str:
    return CLASS_IOU + re.sub(r"\W+", "_", class_name)


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]; out-of-range truths (unlabelled) are left out."""
    truth, pred = np.ravel(truth).astype(np.int64), np.ravel(pred).astype(np.int64)
    keep = (truth >= 0) & (truth < num_classes)
    flat = truth[keep] * num_classes + pred[keep]
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def nll_sum(truth: np.ndarray, probs: np.ndarray) -> float:
    """Summed cross-entropy -log p(true class), clipped as Keras clips it."""
    probs = probs.reshape(-1, probs.shape[-1])
    truth = np.ravel(truth).astype(np.int64)
    keep = (truth >= 0) & (truth < probs.shape[-1])
    p = probs[np.flatnonzero(keep), truth[keep]]
    return float(-np.log(np.clip(p, EPSILON, 1 - EPSILON)).sum())


class PixelScorer:
    """Accumulates one model's pixel confusion matrix and loss over a split."""

    def __init__(self, num_classes: int):
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.nll = 0.0

    def update(self, masks: np.ndarray, probs: np.ndarray) -> None:
        self.matrix += confusion(masks, probs.argmax(-1), len(self.matrix))
        self.nll += nll_sum(masks, probs)

    def result(self, class_names: Sequence[str], ignore: int | None) -> dict:
        return segmentation_metrics(self.matrix, self.nll, class_names, ignore)


class LabelScorer:
    """Keeps one classifier's probabilities (one row per image) for the metrics at the end."""

    def __init__(self, num_classes: int):
        self.labels: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []

    def update(self, labels: np.ndarray, probs: np.ndarray) -> None:
        self.labels.append(np.ravel(labels))
        self.probs.append(probs)

    def result(self, class_names: Sequence[str], ignore: int | None = None) -> dict:
        return classification_metrics(
            np.concatenate(self.labels), np.concatenate(self.probs), class_names
        )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def segmentation_metrics(
    matrix: np.ndarray, nll: float, class_names: Sequence[str], ignore: int | None = None
) -> dict:
    """Pixel accuracy, mean IoU, per-class IoU and Dice; loss over every pixel.

    `ignore`: pixels whose true class it is are not scored (predicting it elsewhere still
    counts as an error), and it is left out of the means.
    """
    m = matrix.astype(np.float64)
    pixels = m.sum()
    if ignore is not None:
        m[ignore, :] = 0
    tp, true, pred = np.diag(m), m.sum(1), m.sum(0)
    iou, dice = _ratio(tp, true + pred - tp), _ratio(2 * tp, true + pred)
    scored = [c for c in range(len(m)) if c != ignore]
    return {
        "loss": nll / pixels if pixels else None,
        "pixel_accuracy": float(tp.sum() / m.sum()) if m.sum() else None,
        "mean_iou": float(np.nanmean(iou[scored])) if not np.isnan(iou[scored]).all() else None,
        "mean_dice": float(np.nanmean(dice[scored])) if not np.isnan(dice[scored]).all() else None,
        "per_class": {
            class_names[c]: {"iou": i, "dice": d}
            for c, i, d in zip(scored, _nan_to_none(iou[scored]), _nan_to_none(dice[scored]))
        },
        "pixels": int(m.sum()),
    }


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count half)."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, precision, recall, F1 (of the second class when there are two, else macro),
    ROC AUC for two classes, and the confusion matrix [true][predicted]."""
    num_classes = probs.shape[-1]
    matrix = confusion(labels, probs.argmax(-1), num_classes)
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    precision, recall = _ratio(tp, m.sum(0)), _ratio(tp, m.sum(1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    precision, recall, f1 = (np.nan_to_num(v) for v in (precision, recall, f1))
    binary = classifier_units(num_classes) == 1  # one sigmoid unit: a positive class
    pick = (lambda v: float(v[1])) if binary else (lambda v: float(v.mean()))
    result = {
        "loss": nll_sum(labels, probs) / len(labels) if len(labels) else None,
        "accuracy": float(tp.sum() / m.sum()) if m.sum() else None,
        "precision": pick(precision),
        "recall": pick(recall),
        "f1": pick(f1),
        "average": f"positive class {class_names[1]!r}" if binary else "macro",
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f)}
            for name, p, r, f in zip(class_names, precision, recall, f1)
        },
        "confusion_matrix": matrix.tolist(),
        "samples": int(m.sum()),
    }
    if binary:
        result["roc_auc"] = roc_auc(np.asarray(labels) == 1, probs[:, 1])
    return result
