"""The interface every task implements, and how a model's outputs read as class probabilities.

A task decides what a model outputs and how it is trained, watched, scored and served; the modes
(train, evaluate, predict, export, explain) call these hooks instead of asking which task runs.
What the data layer needs to know of a task before TensorFlow loads (whether its targets are
masks) is its pure-Python spec in cvtrain/tasks/specs.py; task modules import Keras.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from cvtrain.tasks.specs import SPECS

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from cvtrain.config.schema import LossConfig, RunConfig
    from cvtrain.data.index import FileIndex

# (input file, HxWx3 uint8 image at its own size, class probabilities) per predicted image
Prediction = tuple[Path, np.ndarray, np.ndarray]


def classifier_units(num_classes: int) -> int:
    """A classifier head's width: two classes are one sigmoid unit (as in the book), more a
    softmax. Decided here only (a TensorFlow-free module, as the model builders are);
    class_probabilities and output_classes read it back."""
    return 1 if num_classes == 2 else num_classes


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """A model's output as per-class probabilities: one sigmoid unit is read as [1 - p, p]."""
    outputs = np.asarray(outputs, np.float32)
    if outputs.shape[-1] == 1:
        return np.concatenate([1 - outputs, outputs], axis=-1)
    return outputs


def output_classes(units: int) -> int:
    """The number of classes a head of `units` outputs predicts (one sigmoid unit: two)."""
    return max(2, units)


class Scorer(Protocol):
    """Accumulates one model's evaluation over a split, batch by batch."""

    def update(self, targets: np.ndarray, probs: np.ndarray) -> None: ...

    def result(self, class_names: Sequence[str], ignore: int | None) -> dict: ...


class Task(ABC):
    """One task's hooks. Stateless: `get_task(name)` builds one wherever it is needed. The hooks
    without @abstractmethod are optional (no-ops by default)."""

    name: ClassVar[str]
    main_metrics: ClassVar[tuple[str, ...]]  # the training summary's rows after val_loss
    eval_rows: ClassVar[tuple[str, ...]]  # the evaluation table's rows, in order
    per_class_rows: ClassVar[tuple[str, ...]]  # the evaluation table's rows for each class

    @property
    def dense(self) -> bool:
        """Per-pixel outputs (cvtrain.tasks.specs): served at each input's own size, and
        evaluation can leave a class out (eval.ignore_class)."""
        return SPECS[self.name].dense

    @abstractmethod
    def loss_and_metrics(
        self,
        class_names: Sequence[str],
        loss: LossConfig,
        class_weights: Sequence[float] | None,
        image_size: tuple[int, int],
    ) -> tuple[keras.losses.Loss | str, list[keras.metrics.Metric]]:
        """What model.compile gets: the loss `loss` names (validated for this task by
        cvtrain.losses.check_loss), weighted by `class_weights` if given, and the metrics
        training logs. `image_size`: the model's input (height, width)."""

    def epoch_metrics(
        self, val_ds: tf.data.Dataset, class_names: Sequence[str], image_size: tuple[int, int]
    ) -> list[keras.callbacks.Callback]:
        """Callbacks that add validation metrics Keras cannot compute batch by batch to each
        epoch's logs, before anything logs them (none by default)."""
        return []

    @abstractmethod
    def epoch_callback(
        self,
        samples: tuple[np.ndarray, np.ndarray] | None,
        val_ds: tf.data.Dataset,
        class_names: Sequence[str],
        log_dir: Path,
    ) -> keras.callbacks.Callback | None:
        """The callback that logs images to TensorBoard after each epoch, if any."""

    def watchers(self, val: FileIndex, bn_momentum: float) -> list[keras.callbacks.Callback]:
        """Callbacks that watch the epochs for a known trouble and say in the log what to set
        (none by default). `val`: the validation split; `bn_momentum`: model.bn_momentum."""
        return []

    @abstractmethod
    def write_reports(
        self,
        run_dir: Path,
        model: keras.Model,
        samples: tuple[np.ndarray, np.ndarray] | None,
        class_names: Sequence[str],
        callback: keras.callbacks.Callback | None,
    ) -> None:
        """The task's pictures in a finished run dir (`callback`: epoch_callback's)."""

    @abstractmethod
    def scorer(self, num_classes: int, image_size: tuple[int, int]) -> Scorer:
        """A fresh scorer for mode=evaluate (`image_size`: the model's input)."""

    def serving(self, model: keras.Model) -> tf.types.experimental.Function:
        """The function predict and every export format run: uint8 images [batch, H, W, 3] of
        any size -> the task's outputs (by default class probabilities, per pixel at H x W for
        a dense task)."""
        from cvtrain.inference.serving import raw_predictor

        return raw_predictor(model, self.dense)

    def write_evaluation(self, metrics: dict, class_names: Sequence[str], out_dir: Path) -> None:  # noqa: B027
        """Files mode=evaluate writes beside metrics.json (none by default)."""

    def print_evaluation(self, metrics: dict, class_names: Sequence[str]) -> None:  # noqa: B027
        """What mode=evaluate prints after its table (nothing by default)."""

    def check_inputs(self, files: list[Path]) -> None:  # noqa: B027
        """Refuse mode=predict inputs before any model loads (all accepted by default)."""

    @abstractmethod
    def write_predictions(
        self,
        predictions: Iterable[Prediction],
        out_dir: Path,
        cfg: RunConfig,
        class_names: Sequence[str] | None,
    ) -> tuple[list[Path], str]:
        """mode=predict's outputs: the files written, and where they are (for its last line)."""

    def model_classes(self, model: keras.Model) -> int:
        """How many classes a trained model of this task predicts (its head's width read back)."""
        return output_classes(model.output_shape[-1])

    def explain_class(self, class_names: Sequence[str]) -> int | None:
        """The class mode=explain explains by default; None: each image's predicted class."""
        return None
