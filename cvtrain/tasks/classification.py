"""Image classification: one label per image (cats vs dogs, pet breeds, a folder per class)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from rich.table import Table

from cvtrain import plots, rundir
from cvtrain.console import console
from cvtrain.metrics.evaluation import LabelScorer
from cvtrain.tasks.base import Task, class_probabilities, classifier_units
from cvtrain.tasks.specs import CLASSIFICATION
from cvtrain.training.callbacks import ConfusionMatrixImages, StuckAtChance

CSV = "predictions.csv"  # mode=predict's table in its output dir


class Classification(Task):
    name = CLASSIFICATION
    main_metrics = ("accuracy", "auc")
    eval_rows = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")
    per_class_rows = ("precision", "recall", "f1")

    def loss_and_metrics(self, class_names, loss, class_weights, image_size):
        """The head's own cross-entropy: the only loss (unweighted) classification takes."""
        if classifier_units(len(class_names)) == 1:
            return "binary_crossentropy", [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                # Keras bins thresholds; 1000 bins keep the logged AUC close to the exact one.
                keras.metrics.AUC(num_thresholds=1000, name="auc"),
            ]
        return "sparse_categorical_crossentropy", [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ]

    def epoch_callback(self, samples, val_ds, class_names, log_dir):
        return ConfusionMatrixImages(val_ds, list(class_names), log_dir)

    def watchers(self, val, bn_momentum):
        """Validation accuracy stuck at chance while training accuracy climbs: say why."""
        counts = np.bincount(np.asarray(val.targets, np.int64), minlength=val.num_classes)
        return [StuckAtChance(counts.max() / max(1, counts.sum()), bn_momentum)]

    def write_reports(self, run_dir, model, samples, class_names, callback):
        if samples is not None:
            images, labels = samples
            probs = class_probabilities(model.predict(images, verbose=0))
            path = run_dir / rundir.PREDICTIONS
            plots.save_classification_predictions(images, labels, probs, list(class_names), path)
        if callback is not None and callback.matrix.any():  # empty if no epoch ran
            path = run_dir / rundir.CONFUSION_MATRIX
            plots.save_confusion_matrix(callback.matrix, list(class_names), path)

    def scorer(self, num_classes, image_size):
        return LabelScorer(num_classes)

    def write_evaluation(self, metrics, class_names, out_dir):
        plots.save_confusion_matrix(
            metrics["confusion_matrix"], list(class_names), out_dir / rundir.CONFUSION_MATRIX
        )

    def print_evaluation(self, metrics, class_names):
        console.print("[bold]Confusion matrix[/] (rows: true, columns: predicted)")
        matrix = Table()
        matrix.add_column("")
        for cls in class_names:
            matrix.add_column(cls, justify="right")
        for cls, row in zip(class_names, metrics["confusion_matrix"]):
            matrix.add_row(cls, *(str(v) for v in row))
        console.print(matrix)

    def write_predictions(self, predictions, out_dir, cfg, class_names):
        """predictions.csv: file, label, probability."""
        rows = []
        for path, _, probs in predictions:
            label = int(probs.argmax())
            rows.append((str(path), class_name(class_names, label), f"{probs[label]:.6f}"))
        csv = rundir.write_csv(out_dir / CSV, ("file", "label", "probability"), rows)
        return [csv], str(csv)


def class_name(names: Sequence[str] | None, label: int) -> str:
    """A label's name, or its id for a run that saved no class names."""
    return names[label] if names and label < len(names) else str(label)
