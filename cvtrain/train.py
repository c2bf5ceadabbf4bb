"""Training: runtime setup, model, compile, callbacks, fit, and the run-dir artefacts.

`train` takes an already split file index, so data problems are reported by the caller before
TensorFlow is imported, and returns the best val_loss for Hydra sweepers to minimise.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvtrain import custom_loop, manifest, plots, resume, rundir, tracking
from cvtrain.callbacks import BestCheckpoint, RichProgress
from cvtrain.config import RunConfig, TrainerConfig
from cvtrain.data.index import Split
from cvtrain.data.pipeline import build_dataset, steps_per_epoch
from cvtrain.distribute import check_same_epoch, is_chief, make_strategy
from cvtrain.errors import UserError
from cvtrain.hparams import HParams, run_hparams
from cvtrain.interrupt import trap_signals
from cvtrain.models import build_model
from cvtrain.optimizers import build_optimizer
from cvtrain.resume_callbacks import (
    ResumableEarlyStopping,
    SaveResumeState,
    StopOnNaN,
    StopOnSignal,
    restore,
)
from cvtrain.tasks import get_task
from cvtrain.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int | None
    history: dict[str, list[float]]
    run_dir: Path


def resolve_precision(precision: str, has_gpu: bool) -> str:
    """auto = mixed_float16 on a GPU, float32 on CPU (mixed policies are 3-6x slower there)."""
    if precision != "auto":
        return precision
    return "mixed_float16" if has_gpu else "float32"


def setup_runtime(cfg: TrainerConfig) -> str:
    """Fresh Keras state, seeds and dtype policy; call before building the model."""
    keras.backend.clear_session()  # multirun jobs share a process
    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TF
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision = resolve_precision(cfg.precision, bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_dtype_policy(precision)
    return precision


def sample_batch(ds: tf.data.Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (image, target) pairs of an unshuffled dataset, as numpy."""
    images, targets = [], []
    for x, y in ds.unbatch().take(count):
        images.append(x.numpy())
        targets.append(y.numpy())
    return np.stack(images), np.stack(targets)


def train(cfg: RunConfig, split: Split, run_dir: Path) -> TrainResult:
    strategy = make_strategy(cfg.trainer)  # first: multi-worker collectives set up before any op
    if is_chief(strategy):
        with tracking.track(cfg, run_dir) as tracking_callbacks:  # MLflow: the chief only
            return _train(cfg, split, run_dir, strategy, run_dir, tracking_callbacks)
    # Other workers run the very same steps (collectives must match) and resume from the
    # chief's state in the shared run dir, but write only into a scratch folder.
    log.info("not the chief worker: the chief writes the run directory and checkpoints")
    with tempfile.TemporaryDirectory(prefix="cvtrain-worker-") as scratch:
        if (run_dir / rundir.HISTORY).is_file():  # the epochs before a resume, for the summary
            shutil.copyfile(run_dir / rundir.HISTORY, Path(scratch) / rundir.HISTORY)
        result = _train(cfg, split, Path(scratch), strategy, state_dir=run_dir)
        return replace(result, run_dir=run_dir)


def _train(
    cfg: RunConfig,
    split: Split,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
    state_dir: Path,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train, writing into `run_dir`, resuming from the state saved in `state_dir`."""
    precision = setup_runtime(cfg.trainer)
    task, data = get_task(cfg.task.name), cfg.data
    num_classes = split.train.num_classes
    seed = cfg.trainer.seed
    train_ds = build_dataset(
        split.train, data, training=True, seed=seed, cache_dir=run_dir / rundir.CACHE
    )
    val_ds = build_dataset(
        split.val, data, training=False, seed=seed, cache_dir=run_dir / rundir.CACHE
    )
    steps = cfg.trainer.steps_per_epoch or steps_per_epoch(len(split.train), data.batch_size)
    # Running one step per call over a dataset of unknown size (ignore_errors hides it), Keras
    # 3.15 counts an optimizer step more than it ran each epoch, ending a schedule early: give
    # it the steps of a repeated dataset. (More steps per call stop cleanly at the end.)
    fit_steps = cfg.trainer.steps_per_epoch
    if cfg.trainer.steps_per_execution == 1:
        fit_steps = steps
    if fit_steps:
        train_ds = train_ds.repeat()

    with strategy.scope():  # variables mirrored on every replica; data.batch_size is global
        model = build_model(cfg.model, (*data.image_size, 3), num_classes)
        loss, metrics = task.loss_and_metrics(num_classes)
        model.compile(
            optimizer=build_optimizer(cfg.optimizer, steps * cfg.trainer.epochs),
            loss=loss,
            metrics=metrics,
            jit_compile=cfg.trainer.jit_compile,  # Keras takes True, False or "auto"
            steps_per_execution=cfg.trainer.steps_per_execution,
        )
    log.info(
        "model %s: %s parameters, precision %s, %d replicas, %d train / %d val samples",
        model.name,
        f"{model.count_params():,}",
        precision,
        strategy.num_replicas_in_sync,
        len(split.train),
        len(split.val),
    )
    manifest.write(run_dir / rundir.MANIFEST, cfg, split, precision, model.count_params())

    # Same run dir = continue: weights, optimizer, epoch, best val_loss, early-stopping state.
    state = resume.check_compatible(state_dir, cfg, num_classes)
    check_same_epoch(strategy, state.epoch if state else 0)  # before restore's collectives
    resume.trim_history(run_dir / rundir.HISTORY, state.epoch if state else 0)
    checkpoint = BestCheckpoint(run_dir / rundir.CHECKPOINT)
    if state:
        constant_lr = cfg.optimizer.lr if cfg.optimizer.schedule == "constant" else None
        with strategy.scope():  # the optimizer's variables are built here, mirrored too
            restore(model, state_dir, state, checkpoint, constant_lr)
        log.info("resuming after epoch %d (best val_loss %.4f)", state.epoch, state.best)
    progress = RichProgress(cfg.trainer.epochs, steps)
    callbacks: list[keras.callbacks.Callback] = [
        progress,
        keras.callbacks.CSVLogger(str(run_dir / rundir.HISTORY), append=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / rundir.TENSORBOARD), write_graph=False),
        HParams(run_dir / rundir.TENSORBOARD, run_hparams(cfg), trial_id=str(run_dir)),
        *extra_callbacks,
    ]
    samples = None  # a few fixed validation images for predictions.png (and TensorBoard)
    if cfg.trainer.prediction_images:
        samples = sample_batch(val_ds, cfg.trainer.prediction_images)
    val_log_dir = run_dir / rundir.TENSORBOARD_VALIDATION
    images_callback = task.epoch_callback(samples, val_ds, split.train.class_names, val_log_dir)
    if images_callback is not None:
        callbacks.append(images_callback)
    early_stopping = None
    if cfg.trainer.early_stopping.enabled:
        es = cfg.trainer.early_stopping
        early_stopping = ResumableEarlyStopping(
            state.early_stopping if state else None, patience=es.patience, min_delta=es.min_delta
        )
        callbacks.append(early_stopping)
    fixed = resume.fixed_settings(cfg, num_classes)
    callbacks += [
        StopOnNaN(checkpoint, cfg.optimizer.lr, resume.resume_command(run_dir)),
        SaveResumeState(run_dir, checkpoint, early_stopping, fixed, state),  # best.keras too
    ]

    initial_epoch = state.epoch if state else 0
    epochs = initial_epoch if state and state.stopped_early else cfg.trainer.epochs
    if initial_epoch >= epochs:
        log.info("nothing to train: %s has %d epochs done", run_dir, initial_epoch)
    with trap_signals() as trap, warnings.catch_warnings():
        # ignore_errors() (which drops unreadable files) hides the dataset size from Keras,
        # which then warns after every first epoch; expected, and it says nothing useful.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        try:
            if cfg.trainer.loop == "custom":  # runs under any strategy, multi-worker too
                custom_loop.fit(
                    model,
                    strategy,
                    split,
                    cfg,
                    cache_dir=run_dir / rundir.CACHE,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    callbacks=callbacks,
                    trap=trap,  # workers agree on stopping: see custom_loop
                )
            else:
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=fit_steps,
                    callbacks=[*callbacks, StopOnSignal(trap)],
                    shuffle=False,  # the pipeline shuffles
                    verbose=0,
                )
        except tf.errors.ResourceExhaustedError:
            raise UserError(out_of_memory_message(cfg, precision)) from None
        except tf.errors.UnavailableError:  # a peer's heartbeats stopped (killed, lost)
            raise UserError(lost_worker_message(state_dir)) from None
        finally:
            progress.on_train_end()  # a run stopped by an exception leaves no live bar behind
    history = read_history(run_dir / rundir.HISTORY)  # every epoch, not just this process's
    result = TrainResult(checkpoint.best, checkpoint.best_epoch, history, run_dir)
    write_reports(result, model, samples, task, split.train.class_names, images_callback)
    return result


def out_of_memory_message(cfg: RunConfig, precision: str) -> str:
    data = cfg.data
    return (
        f"out of memory training with data.batch_size={data.batch_size} at data.image_size="
        f"{list(data.image_size)} (model={cfg.model.name}, model.width={cfg.model.width:g}, "
        f"precision {precision}); try data.batch_size={max(1, data.batch_size // 2)}, "
        "a smaller data.image_size or model.width"
        + (", or trainer.precision=mixed_float16 on a GPU" if precision == "float32" else "")
    )


def lost_worker_message(run_dir: Path) -> str:
    return (
        "lost contact with another worker (killed, crashed or unreachable); every worker stops. "
        "The run is saved up to its last completed epoch: start all workers again with "
        f"{resume.resume_command(run_dir)}"
    )


def write_reports(
    result: TrainResult,
    model: keras.Model,
    samples: tuple[np.ndarray, np.ndarray] | None,
    task: Task,
    class_names: tuple[str, ...],
    images_callback: keras.callbacks.Callback | None = None,
) -> None:
    """metrics.json, curves.png, then the task's pictures (predictions.png, ...) from the run."""
    run_dir, history = result.run_dir, result.history
    best = result.best_epoch
    metrics = {
        "best_epoch": best,
        "best_val_loss": result.best_val_loss if math.isfinite(result.best_val_loss) else None,
        "epochs_run": len(history.get("loss", [])),
        "best": {k: v[best - 1] for k, v in history.items()} if best else {},
        "final": {k: v[-1] for k, v in history.items()},
    }
    rundir.write_json(run_dir / rundir.METRICS, metrics)
    plots.save_curves(history, run_dir / rundir.CURVES)
    task.write_reports(run_dir, model, samples, class_names, images_callback)


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns (every epoch the run ever completed, not just this process's)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
