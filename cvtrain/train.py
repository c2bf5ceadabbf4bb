"""Training: runtime setup, model, compile, callbacks, fit, and the run-dir artefacts.

`train` takes an already split file index, so data problems are reported by the caller before
TensorFlow is imported, and returns the best val_loss for Hydra sweepers to minimise.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvtrain import artifacts, manifest, plots
from cvtrain.callbacks import BestCheckpoint, PredictionImages, RichProgress
from cvtrain.config import OptimizerConfig, RunConfig, TrainerConfig
from cvtrain.data.index import SEGMENTATION, Split
from cvtrain.data.pipeline import build_dataset, steps_per_epoch
from cvtrain.models import build_model
from cvtrain.tasks import loss_and_metrics

log = logging.getLogger(__name__)

# ignore_errors() (which drops unreadable files) hides the dataset size from Keras, which then
# warns at the end of every first epoch; the warning is expected and says nothing useful.
warnings.filterwarnings("ignore", message="Your input ran out of data")


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int | None
    history: dict[str, list[float]]
    run_dir: Path


def resolve_precision(precision: str) -> str:
    """auto = mixed_float16 on a GPU, float32 on CPU (mixed policies are 3-6x slower there)."""
    if precision != "auto":
        return precision
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def setup_runtime(cfg: TrainerConfig) -> str:
    """Fresh Keras state, seeds and dtype policy; call before building the model."""
    keras.backend.clear_session()  # multirun jobs share a process
    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TF
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision = resolve_precision(cfg.precision)
    keras.mixed_precision.set_dtype_policy(precision)
    return precision


def build_optimizer(cfg: OptimizerConfig, total_steps: int) -> keras.optimizers.Optimizer:
    lr = cfg.lr
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, total_steps))
    if cfg.name == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum)
    return keras.optimizers.RMSprop(lr, momentum=cfg.momentum)


def _jit(value: str) -> bool | str:
    return {"true": True, "false": False}.get(value, "auto")


def sample_batch(ds: tf.data.Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (image, target) pairs of an unshuffled dataset, as numpy."""
    images, targets = [], []
    for x, y in ds.unbatch().take(count):
        images.append(x.numpy())
        targets.append(y.numpy())
    return np.stack(images), np.stack(targets)


def train(cfg: RunConfig, split: Split, run_dir: Path) -> TrainResult:
    precision = setup_runtime(cfg.trainer)
    task, data = cfg.task.name, cfg.data
    num_classes = split.train.num_classes
    seed = cfg.trainer.seed
    train_ds = build_dataset(
        split.train, data, training=True, seed=seed, cache_dir=run_dir / "cache"
    )
    val_ds = build_dataset(split.val, data, training=False, seed=seed, cache_dir=run_dir / "cache")
    steps = cfg.trainer.steps_per_epoch or steps_per_epoch(len(split.train), data.batch_size)
    if cfg.trainer.steps_per_epoch:
        train_ds = train_ds.repeat()

    model = build_model(cfg.model, (*data.image_size, 3), num_classes)
    loss, metrics = loss_and_metrics(task, num_classes)
    model.compile(
        optimizer=build_optimizer(cfg.optimizer, steps * cfg.trainer.epochs),
        loss=loss,
        metrics=metrics,
        jit_compile=_jit(cfg.trainer.jit_compile),
    )
    log.info(
        "model %s: %s parameters, precision %s, %d train / %d val samples",
        model.name,
        f"{model.count_params():,}",
        precision,
        len(split.train),
        len(split.val),
    )
    manifest.write(run_dir / artifacts.MANIFEST, cfg, split, precision, model.count_params())

    checkpoint = BestCheckpoint(run_dir / artifacts.CHECKPOINT)
    callbacks: list[keras.callbacks.Callback] = [
        RichProgress(cfg.trainer.epochs, steps),
        checkpoint,
        keras.callbacks.CSVLogger(str(run_dir / artifacts.HISTORY)),
        keras.callbacks.TensorBoard(
            log_dir=str(run_dir / artifacts.TENSORBOARD), write_graph=False
        ),
    ]
    samples = None
    if cfg.trainer.prediction_images and task == SEGMENTATION:
        samples = sample_batch(val_ds, cfg.trainer.prediction_images)
        log_dir = run_dir / artifacts.TENSORBOARD / "validation"
        callbacks.append(PredictionImages(*samples, log_dir=log_dir))
    if cfg.trainer.early_stopping.enabled:
        es = cfg.trainer.early_stopping
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=es.patience, min_delta=es.min_delta)
        )

    fit = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=cfg.trainer.steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    result = TrainResult(checkpoint.best, checkpoint.best_epoch, history, run_dir)
    write_reports(result, model, samples)
    return result


def write_reports(
    result: TrainResult, model: keras.Model, samples: tuple[np.ndarray, np.ndarray] | None
) -> None:
    """metrics.json, curves.png and predictions.png from the finished run."""
    run_dir, history = result.run_dir, result.history
    best = result.best_epoch
    metrics = {
        "best_epoch": best,
        "best_val_loss": result.best_val_loss if math.isfinite(result.best_val_loss) else None,
        "epochs_run": len(history.get("loss", [])),
        "best": {k: v[best - 1] for k, v in history.items()} if best else {},
        "final": {k: v[-1] for k, v in history.items()},
    }
    artifacts.write_json(run_dir / artifacts.METRICS, metrics)
    plots.save_curves(read_history(run_dir / artifacts.HISTORY), run_dir / artifacts.CURVES)
    if samples is not None:
        images, truths = samples
        probs = model.predict(images, verbose=0)
        plots.save_segmentation_predictions(images, truths, probs, run_dir / artifacts.PREDICTIONS)


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns (every epoch the run ever completed, not just this process's)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
