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

from cvtrain import rundir
from cvtrain.errors import UserError
from cvtrain.state import resume, snapshots
from cvtrain.state.best_model import BestCheckpoint, save_model
from cvtrain.state.writer import BackgroundJobs
from cvtrain.training.interrupt import Interrupted, SignalTrap


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

    best.keras is rewritten from the state's best epoch: a kill before the file caught up with
    the state (it is written at most once a minute) must not leave an older model.
    The optimizer's saved learning rate is replaced by `lr` (a constant rate from the config):
    lowering optimizer.lr to continue after a NaN must take effect.
    """
    variables = snapshots.training_variables(model)
    backup = run_dir / rundir.BACKUP
    if state.best_weights:
        load_state(model, variables, backup / state.best_weights)
        save_model(model, checkpoint.path, state.best_epoch)
    checkpoint.best, checkpoint.best_epoch = state.best, state.best_epoch
    load_state(model, variables, backup / state.weights)
    if lr is not None:
        model.optimizer.learning_rate = lr


def load_state(model: keras.Model, variables: list[keras.Variable], path: Path) -> None:
    if path.name.endswith(".weights.h5"):  # Keras's format: runs saved by earlier cvtrain
        model.load_weights(path)
    else:
        snapshots.assign(variables, snapshots.read(path), path)


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
    """After every epoch: the weights and optimizer state, then state.json naming the last and
    the best epoch's files (each atomic, in that order), and best.keras (via `checkpoint`).

    The epoch's variables are copied when it ends (milliseconds) and written by a background
    thread while the next epoch trains; `close` waits for the last write, so a run that ends
    or stops (signal, NaN, error) leaves the state of its last completed epoch. Must come
    after the CSV and early-stopping callbacks so the state includes their update for the epoch.
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
        self.writes = BackgroundJobs("cvtrain-resume-state")

    def on_epoch_end(self, epoch, logs=None):
        snapshot = snapshots.take(snapshots.training_variables(self.model))
        name = rundir.epoch_weights(epoch + 1)
        value = (logs or {}).get(self.checkpoint.monitor)
        weights = snapshot[: len(self.model.variables)]
        if self.checkpoint.offer(self.model, epoch + 1, value, weights):
            self.best_weights = name
        es = self.early_stopping
        state = resume.ResumeState(
            epoch=epoch + 1,
            weights=name,
            best=self.checkpoint.best,
            best_epoch=self.checkpoint.best_epoch,
            best_weights=self.best_weights,
            early_stopping=es.state() if es else {},
            stopped_early=bool(es and es.stopped_epoch),
            fixed=self.fixed,
        )
        self.writes.submit(lambda: self._commit(snapshot, state))

    def _commit(self, snapshot: snapshots.Snapshot, state: resume.ResumeState) -> None:
        backup = self.run_dir / rundir.BACKUP
        snapshots.write(backup / state.weights, snapshot)
        resume.save(self.run_dir, state)
        for old in backup.glob(rundir.EPOCH_WEIGHTS):
            if old.name not in (state.weights, state.best_weights):
                old.unlink()

    def close(self) -> None:
        """The last epoch's state and the best model on disk (when training ends or stops)."""
        try:
            self.writes.wait()
        finally:
            self.checkpoint.flush(self.model)


class StopOnFailedSave(keras.callbacks.Callback):
    """Stop at the first batch after the last epoch's state failed to save (a full disk, a
    folder gone): no epoch is trained, logged or offered as best beyond the last one saved.
    Goes first, so an epoch after a failed save ends before any logger records it."""

    def __init__(self, saver: SaveResumeState):
        super().__init__()
        self.writes = saver.writes

    def on_train_batch_end(self, batch, logs=None):
        self.writes.raise_if_failed()

    def on_epoch_end(self, epoch, logs=None):
        self.writes.wait()  # the save has had the whole epoch to finish


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
