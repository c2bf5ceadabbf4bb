"""Keras callbacks: rich progress, TensorBoard epoch scalars, prediction and confusion images, and
the report of each epoch to a sweep's Optuna trial."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cvtrain.console import console
from cvtrain.metrics.evaluation import confusion
from cvtrain.plots import (
    confusion_matrix_figure,
    figure_image,
    segmentation_predictions_figure,
)
from cvtrain.tasks.base import class_probabilities
from cvtrain.tracking.tensorboard_events import EventWriter

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import optuna

log = logging.getLogger(__name__)


def format_logs(logs: dict | None) -> str:
    return "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if k != "learning_rate")


def seconds_since_start() -> float | None:
    """Wall seconds since this process started (Linux /proc; None elsewhere)."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


class RichProgress(keras.callbacks.Callback):
    """A bar per epoch with live loss/metrics and ETA, replacing Keras's own output.

    Off a terminal (CI, pipes) only the per-epoch log line is written.
    """

    def __init__(self, epochs: int, steps: int):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.progress: Progress | None = None
        self.seen = 0
        self.first_step = True  # logged with the time it took from the process's start

    def on_train_begin(self, logs=None):
        if not console.is_terminal:
            return
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
        )
        self.progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        if self.progress:
            self.task = self.progress.add_task(
                "train", total=self.steps, epoch=epoch + 1, epochs=self.epochs, metrics=""
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step:
            self.first_step = False
            since = seconds_since_start()
            log.info("first training step done%s", f", {since:.1f} s after start" if since else "")
        self.seen = batch + 1
        if self.progress:
            self.progress.update(self.task, completed=self.seen, metrics=format_logs(logs))

    def on_epoch_end(self, epoch, logs=None):
        if self.progress:  # the real step count differs from the estimate if files were dropped
            self.progress.update(
                self.task, total=self.seen, completed=self.seen, metrics=format_logs(logs)
            )
        log.info("epoch %d/%d: %s", epoch + 1, self.epochs, format_logs(logs))

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()


class AtFirstEpochEnd(keras.callbacks.Callback):
    """Runs `action` once, when the run's first epoch ends (the background data scan's report)."""

    def __init__(self, action: Callable[[], object]):
        super().__init__()
        self.action: Callable[[], object] | None = action

    def on_epoch_end(self, epoch, logs=None):
        if self.action is not None:
            action, self.action = self.action, None
            action()


class EpochScalars(keras.callbacks.Callback):
    """Each epoch's logs and learning rate to TensorBoard, laid out as keras.callbacks.TensorBoard
    does (`<log_dir>/train` and `/validation`, tags `epoch_<name>`), without its per-batch cost:
    that callback runs a summary op per metric on every batch even when it records epochs only.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = log_dir
        self.writers: dict[str, EventWriter] = {}

    def on_train_begin(self, logs=None):
        self.writers = {p: EventWriter(self.log_dir / p) for p in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        lr = self.model.optimizer.learning_rate  # a variable, mirrored under a strategy
        logs.setdefault("learning_rate", keras.ops.convert_to_numpy(lr))
        parts: dict[str, dict] = {"train": {}, "validation": {}}
        for name, value in logs.items():
            part = "validation" if name.startswith("val_") else "train"
            parts[part][f"epoch_{name.removeprefix('val_')}"] = value
        for part, writer in self.writers.items():
            writer.scalars(parts[part], epoch + 1)  # epochs as the CLI counts them

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


# (images, truths, the model's outputs, class names) -> the figure predictions.png draws
PredictionFigure = Callable[[np.ndarray, np.ndarray, np.ndarray, Sequence[str]], "plt.Figure"]


class PredictionImages(keras.callbacks.Callback):
    """Log truth and prediction for a few fixed validation images to TensorBoard, as
    predictions.png draws them (`figure`: the task's, segmentation's by default)."""

    def __init__(
        self,
        images: np.ndarray,
        truths: np.ndarray,
        class_names: Sequence[str],
        log_dir: Path,
        figure: PredictionFigure = segmentation_predictions_figure,
    ):
        super().__init__()
        self.images, self.truths, self.class_names = images, truths, class_names
        self.draw = figure
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model.predict_on_batch(self.images)  # predict() costs ~0.1 s more a call
        figure = self.draw(self.images, self.truths, outputs, self.class_names)
        with self.writer.as_default():
            tf.summary.image("predictions", figure_image(figure)[None], step=epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class ConfusionMatrixImages(keras.callbacks.Callback):
    """Predict the validation set after each epoch; log its confusion matrix to TensorBoard.

    `matrix` keeps the last one (the final model's), for confusion_matrix.png.
    """

    def __init__(self, val_ds: tf.data.Dataset, class_names: list[str], log_dir: Path):
        super().__init__()
        self.val_ds, self.class_names = val_ds, class_names
        self.matrix = np.zeros((len(class_names), len(class_names)), np.int64)
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def on_epoch_end(self, epoch, logs=None):
        self.matrix = np.zeros_like(self.matrix)
        for images, labels in self.val_ds:
            probs = class_probabilities(self.model.predict_on_batch(images))
            self.matrix += confusion(labels.numpy(), probs.argmax(-1), len(self.class_names))
        image = figure_image(confusion_matrix_figure(self.matrix, self.class_names))
        with self.writer.as_default():
            tf.summary.image("confusion_matrix", image[None], step=epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class StuckAtChance(keras.callbacks.Callback):
    """Says once, in the log, why validation accuracy sits at chance while training accuracy
    climbs, and what to set. In a run of a few hundred steps the BatchNormalization moving
    statistics (momentum 0.99 averages ~100 steps) lag far behind the weights, so the model in
    inference mode predicts one class for every image; a lower model.bn_momentum keeps up."""

    EPOCHS = 3  # at chance this many epochs in a row before it says so
    MARGIN = 0.02  # "at chance": validation accuracy within this of the largest class's share
    CLIMB = 0.1  # while training accuracy is at least this far above it

    def __init__(self, chance: float, bn_momentum: float):
        super().__init__()
        self.chance, self.bn_momentum = chance, bn_momentum
        self.stuck, self.said = 0, False

    def on_epoch_end(self, epoch, logs=None):
        val, train = (logs or {}).get("val_accuracy"), (logs or {}).get("accuracy")
        if val is None or train is None:
            return
        at_chance = val <= self.chance + self.MARGIN and train >= self.chance + self.CLIMB
        self.stuck = self.stuck + 1 if at_chance else 0
        if self.stuck < self.EPOCHS or self.said:
            return
        self.said = True
        fix = (
            f"set model.bn_momentum=0.9 (now {self.bn_momentum:g}) or use "
            "experiment=small_data_classification"
            if self.bn_momentum > 0.9
            else "lower optimizer.lr or train longer"
        )
        log.warning(
            "validation accuracy has sat at chance (%.3f; the largest class is %.3f of the "
            "images) for %d epochs while training accuracy reached %.3f: the "
            "BatchNormalization statistics lag behind the weights in a short run, so the model "
            "predicts one class; %s",
            val,
            self.chance,
            self.stuck,
            train,
            fix,
        )


class ReportToTrial(keras.callbacks.Callback):
    """After each epoch: the run's best val_loss so far to the trial (the sweep's objective, so
    a noisy epoch does not prune a good run), then stop if the pruner says so. The epoch is
    saved as any other: a pruned job's run dir holds best.keras of the epochs it ran."""

    def __init__(self, trial: optuna.trial.Trial):
        super().__init__()
        self.trial = trial
        self.best = math.inf
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is not None and math.isfinite(loss):
            self.best = min(self.best, float(loss))
        if not math.isfinite(self.best):
            return
        self.trial.report(self.best, step=epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
            log.info("pruned after epoch %d: best val_loss %.4f", epoch + 1, self.best)
