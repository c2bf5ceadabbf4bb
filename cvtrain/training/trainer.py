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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvtrain import plots, rundir
from cvtrain.config.schema import RunConfig, TrainerConfig
from cvtrain.data.index import Split
from cvtrain.errors import UserError
from cvtrain.losses import class_weights
from cvtrain.models import build_model
from cvtrain.rundir import manifest
from cvtrain.state import resume
from cvtrain.state.best_model import BestCheckpoint
from cvtrain.state.keeper import (
    ResumableEarlyStopping,
    SaveResumeState,
    StopOnFailedSave,
    StopOnNaN,
    StopOnSignal,
    restore,
)
from cvtrain.sweeps.job import swept_keys, trial_of_this_job
from cvtrain.tasks import get_task
from cvtrain.tasks.base import Task
from cvtrain.tracking import mlflow_run
from cvtrain.tracking.hparams import HParams, session_hparams, session_name
from cvtrain.training import custom_loop
from cvtrain.training.callbacks import EpochScalars, ReportToTrial, RichProgress
from cvtrain.training.distribute import check_same_epoch, is_chief, make_strategy
from cvtrain.training.inputs import Inputs, build_inputs
from cvtrain.training.interrupt import trap_signals
from cvtrain.training.optimizers import build_optimizer

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int | None
    history: dict[str, list[float]]
    run_dir: Path
    pruned_at_epoch: int | None = None  # a sweep's pruner stopped it after this epoch


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
    if not images:  # the pipeline dropped every file it read (ignore_errors)
        raise UserError(
            "no validation image came through the input pipeline: every one failed to load "
            "at this data.image_size (too large for memory?) or is unreadable; try "
            "`mode=verify_data` and a smaller data.image_size"
        )
    return np.stack(images), np.stack(targets)


def train(
    cfg: RunConfig,
    split: Split,
    run_dir: Path,
    state: resume.ResumeState | None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train into `run_dir`, continuing from `state` (resume.check_compatible's, read before
    TensorFlow loaded; None starts afresh). `callbacks` run beside cvtrain's own."""
    strategy = make_strategy(cfg.trainer)  # first: multi-worker collectives set up before any op
    if is_chief(strategy):
        with mlflow_run.track(cfg, run_dir) as tracking_callbacks:  # MLflow: the chief only
            extra = [*callbacks, *tracking_callbacks]
            return _train(cfg, split, run_dir, strategy, state, run_dir, extra)
    # Other workers run the very same steps (collectives must match) and resume from the
    # chief's state in the shared run dir, but write only into a scratch folder.
    log.info("not the chief worker: the chief writes the run directory and checkpoints")
    with tempfile.TemporaryDirectory(prefix="cvtrain-worker-") as scratch:
        if (run_dir / rundir.HISTORY).is_file():  # the epochs before a resume, for the summary
            shutil.copyfile(run_dir / rundir.HISTORY, Path(scratch) / rundir.HISTORY)
        result = _train(cfg, split, Path(scratch), strategy, state, run_dir, callbacks)
        return replace(result, run_dir=run_dir)


def _train(
    cfg: RunConfig,
    split: Split,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
    state: resume.ResumeState | None,
    state_dir: Path,
    extra_callbacks: Sequence[keras.callbacks.Callback],
) -> TrainResult:
    """The steps of a training, writing into `run_dir`, resuming from `state_dir`."""
    precision = setup_runtime(cfg.trainer)
    with out_of_memory_is_one_line(cfg, precision):  # in the pipeline, the samples or fit
        task = get_task(cfg.task.name)
        inputs = build_inputs(cfg, split, run_dir)
        weights = class_weights.resolve(cfg.loss, split.train)
        model = build_and_compile(cfg, task, split, inputs.steps, strategy, weights)
        log.info(
            "model %s: %s parameters, precision %s, %d replicas, %d train / %d val samples",
            model.name,
            f"{model.count_params():,}",
            precision,
            strategy.num_replicas_in_sync,
            len(split.train),
            len(split.val),
        )
        params = model.count_params()
        manifest.write(run_dir / rundir.MANIFEST, cfg, split, precision, params, weights)
        checkpoint = continue_from(state, state_dir, run_dir, model, cfg, strategy)
        callbacks = build_callbacks(cfg, task, inputs, run_dir, checkpoint, state, extra_callbacks)
        fit(cfg, model, strategy, inputs, callbacks, state, state_dir)
        return finish(run_dir, model, task, split, checkpoint, callbacks)


def build_and_compile(
    cfg: RunConfig,
    task: Task,
    split: Split,
    steps: int,
    strategy: tf.distribute.Strategy,
    weights: Sequence[float] | None = None,
) -> keras.Model:
    """The model compiled with the task's loss (`weights`: class_weights.resolve's) and metrics."""
    class_names = split.train.class_names
    with strategy.scope():  # variables mirrored on every replica; data.batch_size is global
        model = build_model(cfg.model, (*cfg.data.image_size, 3), len(class_names))
        size = tuple(cfg.data.image_size)
        loss, metrics = task.loss_and_metrics(class_names, cfg.loss, weights, size)
        model.compile(
            optimizer=build_optimizer(cfg.optimizer, steps * cfg.trainer.epochs),
            loss=loss,
            metrics=metrics,
            jit_compile=cfg.trainer.jit_compile,  # Keras takes True, False or "auto"
            steps_per_execution=cfg.trainer.steps_per_execution,
        )
    return model


def continue_from(
    state: resume.ResumeState | None,
    state_dir: Path,
    run_dir: Path,
    model: keras.Model,
    cfg: RunConfig,
    strategy: tf.distribute.Strategy,
) -> BestCheckpoint:
    """Weights, optimizer, best val_loss of a resumed run (history trimmed to its state); the
    checkpoint callback that only a better epoch overwrites."""
    check_same_epoch(strategy, state.epoch if state else 0)  # before restore's collectives
    resume.trim_history(run_dir / rundir.HISTORY, state.epoch if state else 0)
    checkpoint = BestCheckpoint(run_dir / rundir.CHECKPOINT)
    if state:
        constant_lr = cfg.optimizer.lr if cfg.optimizer.schedule == "constant" else None
        with strategy.scope():  # the optimizer's variables are built here, mirrored too
            restore(model, state_dir, state, checkpoint, constant_lr)
        log.info("resuming after epoch %d (best val_loss %.4f)", state.epoch, state.best)
    return checkpoint


@dataclass
class Callbacks:
    """The run's callbacks in the order they run, and the ones `finish` reads back."""

    ordered: list[keras.callbacks.Callback]
    progress: RichProgress
    saver: SaveResumeState
    images: keras.callbacks.Callback | None  # the task's per-epoch pictures
    samples: tuple[np.ndarray, np.ndarray] | None  # the validation images they show
    pruner: ReportToTrial | None  # in a sweep that prunes


def build_callbacks(
    cfg: RunConfig,
    task: Task,
    inputs: Inputs,
    run_dir: Path,
    checkpoint: BestCheckpoint,
    state: resume.ResumeState | None,
    extra: Sequence[keras.callbacks.Callback],
) -> Callbacks:
    """The check that the last save worked first, then loggers (they see each epoch as it
    ended), then the callbacks that may stop the run, then the state save: a NaN epoch is never
    saved, and an epoch that ended is saved before a signal stops the run (the loops add that
    stop last)."""
    samples = None  # a few fixed validation images for predictions.png (and TensorBoard)
    if cfg.trainer.prediction_images:
        samples = sample_batch(inputs.val, cfg.trainer.prediction_images)
    class_names = inputs.split.train.class_names
    pictures = run_dir / rundir.TENSORBOARD_VALIDATION
    images = task.epoch_callback(samples, inputs.val, class_names, pictures)
    early_stopping = None
    if cfg.trainer.early_stopping.enabled:
        es = cfg.trainer.early_stopping
        early_stopping = ResumableEarlyStopping(
            state.early_stopping if state else None, patience=es.patience, min_delta=es.min_delta
        )
    progress = RichProgress(cfg.trainer.epochs, inputs.steps)
    labels = inputs.split.train
    fixed = resume.fixed_settings(cfg, labels.class_names, labels.mask_values)
    trial = trial_of_this_job()
    pruner = ReportToTrial(trial) if trial else None
    size = tuple(cfg.data.image_size)
    loggers = [
        *task.epoch_metrics(inputs.val, class_names, size),  # first: the others log them
        progress,
        keras.callbacks.CSVLogger(str(run_dir / rundir.HISTORY), append=True),
        EpochScalars(run_dir / rundir.TENSORBOARD),
        hparams_logger(cfg, run_dir, checkpoint, pruner),
        *extra,
        images,
        *task.watchers(inputs.split.val, cfg.model.bn_momentum),
    ]
    stoppers = [
        early_stopping,
        StopOnNaN(checkpoint, cfg.optimizer.lr, resume.resume_command(run_dir)),
        pruner,
    ]
    saver = SaveResumeState(run_dir, checkpoint, early_stopping, fixed, state)  # best.keras too
    ordered = [c for c in (StopOnFailedSave(saver), *loggers, *stoppers, saver) if c is not None]
    return Callbacks(ordered, progress, saver, images, samples, pruner)


def hparams_logger(
    cfg: RunConfig, run_dir: Path, checkpoint: BestCheckpoint, pruner: ReportToTrial | None
) -> HParams:
    overrides, swept = manifest.job_overrides(), swept_keys()
    hparams = session_hparams(cfg, overrides, swept)
    name = session_name(run_dir, overrides, swept)
    return HParams(run_dir / rundir.TENSORBOARD, hparams, name, checkpoint.best, pruner)


def keras_fit(model, inputs: Inputs, *, epochs, initial_epoch, callbacks, trap, strategy) -> None:
    model.fit(
        inputs.train,
        validation_data=inputs.val,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=inputs.fit_steps,
        callbacks=[*callbacks, StopOnSignal(trap)],
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )


# trainer.loop -> the loop; the same inputs and callbacks for both
LOOPS = {"fit": keras_fit, "custom": custom_loop.fit}


def fit(
    cfg: RunConfig,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    inputs: Inputs,
    callbacks: Callbacks,
    state: resume.ResumeState | None,
    state_dir: Path,
) -> None:
    """Run the chosen loop with signals trapped; turn the errors a user can act on into one
    line each."""
    initial_epoch = state.epoch if state else 0
    # An early-stopped run stays stopped while early stopping is on; turned off, it goes on.
    stopped = state and state.stopped_early and cfg.trainer.early_stopping.enabled
    epochs = initial_epoch if stopped else cfg.trainer.epochs
    if initial_epoch >= epochs:
        log.info("nothing to train: %d epochs done", initial_epoch)
    with trap_signals() as trap, warnings.catch_warnings():
        # ignore_errors() (which drops unreadable files) hides the dataset size from Keras,
        # which then warns after every first epoch; expected, and it says nothing useful.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        try:
            LOOPS[cfg.trainer.loop](
                model,
                inputs,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks.ordered,
                trap=trap,
                strategy=strategy,
            )
        except tf.errors.UnavailableError:  # a peer's heartbeats stopped (killed, lost)
            raise UserError(lost_worker_message(state_dir)) from None
        finally:
            callbacks.progress.on_train_end()  # a run stopped by an error leaves no live bar
            callbacks.saver.close()  # the last epoch's state and best.keras, whatever stopped it


def finish(
    run_dir: Path,
    model: keras.Model,
    task: Task,
    split: Split,
    checkpoint: BestCheckpoint,
    callbacks: Callbacks,
) -> TrainResult:
    history = read_history(run_dir / rundir.HISTORY)  # every epoch, not just this process's
    pruned_at = callbacks.pruner.pruned_at if callbacks.pruner else None
    result = TrainResult(checkpoint.best, checkpoint.best_epoch, history, run_dir, pruned_at)
    write_reports(result, model, callbacks.samples, task, split.train.class_names, callbacks.images)
    return result


@contextmanager
def out_of_memory_is_one_line(cfg: RunConfig, precision: str) -> Iterator[None]:
    try:
        yield
    except tf.errors.ResourceExhaustedError:
        raise UserError(out_of_memory_message(cfg, precision)) from None


def out_of_memory_message(cfg: RunConfig, precision: str) -> str:
    data, width = cfg.data, getattr(cfg.model, "width", None)  # models built in stages have one
    model = f"model={cfg.model.name}" + (f", model.width={width:g}" if width else "")
    return (
        f"out of memory training with data.batch_size={data.batch_size} at data.image_size="
        f"{list(data.image_size)} ({model}, precision {precision}); try data.batch_size="
        f"{max(1, data.batch_size // 2)}, a smaller data.image_size"
        + (" or model.width" if width else "")
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
        "pruned_at_epoch": result.pruned_at_epoch,
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
