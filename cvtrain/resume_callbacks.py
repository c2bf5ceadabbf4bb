"""Keras callbacks that make a run resumable and stop it cleanly (signals, NaN loss).

Keras's BackupAndRestore overwrites `latest.weights.h5` in place and deletes it when fit ends
(also after TerminateOnNaN); here each epoch's state is written atomically and kept, so a kill
at any moment, a NaN or a finished run can all be continued.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras

from cvtrain import resume, rundir
from cvtrain.callbacks import BestCheckpoint, save_model
from cvtrain.errors import UserError
from cvtrain.interrupt import Interrupted, SignalTrap


class NonFiniteLoss(UserError):
    """The training loss became NaN or inf."""


def restore(
    model: keras.Model,
    run_dir: Path,
    state: resume.ResumeState,
    checkpoint: BestCheckpoint,
    lr: float | None = None,
) -> None:
    """Weights and optimizer state (iterations, moments) after `state.epoch`.

    best.keras is rewritten from the state's best epoch: a kill between saving best.keras and
    committing the state must not leave a model from an epoch that is about to be re-run.
    The optimizer's saved learning rate is replaced by `lr` (a constant rate from the config):
    lowering optimizer.lr to continue after a NaN must take effect.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    backup = run_dir / rundir.BACKUP
    if state.best_weights:
        model.load_weights(backup / state.best_weights)
        save_model(model, checkpoint.path)
    checkpoint.best, checkpoint.best_epoch = state.best, state.best_epoch
    model.load_weights(backup / state.weights)
    if lr is not None:
        model.optimizer.learning_rate = lr


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that starts from a resumed run's wait count and best value."""

    def __init__(self, saved: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.saved = saved or {}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait = self.saved.get("wait", 0)
        self.best = self.saved.get("best")

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"wait": self.wait, "best": best}


class SaveResumeState(keras.callbacks.Callback):
    """After every epoch: weights + optimizer, best.keras if improved, then state.json naming
    the last and the best epoch's weights (all atomic). It drives `checkpoint` itself, so the
    state always knows which weights best.keras came from.

    Must come after the CSV and early-stopping callbacks so the state it records includes their
    update for the epoch.
    """

    def __init__(
        self,
        run_dir: Path,
        checkpoint: BestCheckpoint,
        early_stopping: ResumableEarlyStopping | None,
        fixed: dict[str, Any],
        state: resume.ResumeState | None = None,
    ):
        super().__init__()
        self.run_dir, self.checkpoint, self.early_stopping = run_dir, checkpoint, early_stopping
        self.fixed = fixed
        self.best_weights = state.best_weights if state else None

    def set_model(self, model):
        super().set_model(model)
        self.checkpoint.set_model(model)

    def on_epoch_end(self, epoch, logs=None):
        backup = self.run_dir / rundir.BACKUP
        name = rundir.epoch_weights(epoch + 1)
        with rundir.atomic_path(backup / name, suffix=rundir.WEIGHTS_SUFFIX) as tmp:
            self.model.save_weights(tmp)
        best_before = self.checkpoint.best_epoch
        self.checkpoint.on_epoch_end(epoch, logs)
        if self.checkpoint.best_epoch != best_before:
            self.best_weights = name
        es = self.early_stopping
        resume.save(
            self.run_dir,
            resume.ResumeState(
                epoch=epoch + 1,
                weights=name,
                best=self.checkpoint.best,
                best_epoch=self.checkpoint.best_epoch,
                best_weights=self.best_weights,
                early_stopping=es.state() if es else {},
                stopped_early=bool(es and es.stopped_epoch),
                fixed=self.fixed,
            ),
        )
        for old in backup.glob(rundir.EPOCH_WEIGHTS):
            if old.name not in (name, self.best_weights):
                old.unlink()


class StopOnSignal(keras.callbacks.Callback):
    """Raise `Interrupted` at the first batch or epoch boundary after SIGINT/SIGTERM.

    Goes last, so an epoch that has ended is fully saved before the run stops.
    """

    def __init__(self, trap: SignalTrap):
        super().__init__()
        self.trap, self.epoch = trap, 0

    def _check(self) -> None:
        if self.trap.signum is not None:
            raise Interrupted(self.trap.signum, self.epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self._check()

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_test_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN(raise_error=True) whose error names the epoch and what was kept.

    Raising (rather than stop_training) leaves the last good resume state and best.keras
    as they are.
    """

    def __init__(self, checkpoint: BestCheckpoint, lr: float, resume_hint: str):
        super().__init__(raise_error=True)
        self.checkpoint, self.lr, self.resume_hint = checkpoint, lr, resume_hint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            loss = float((logs or {}).get("loss", math.nan))
            best = self.checkpoint
            kept = (
                f"best.keras (epoch {best.best_epoch}, val_loss {best.best:.4f}) and the "
                f"resume state after epoch {self.epoch - 1} are kept"
                if best.best_epoch
                else "no epoch had finished, so there is no checkpoint yet"
            )
            raise NonFiniteLoss(
                f"loss became {loss} in epoch {self.epoch} (batch {batch + 1}); training "
                f"stopped. {kept}. Lower optimizer.lr (now {self.lr:g}) or check the data, "
                f"then continue with: {self.resume_hint} optimizer.lr=<smaller>"
            ) from None
