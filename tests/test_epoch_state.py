"""The per-epoch state without holding up training: the epoch's variables are copied when it
ends and written while the next one trains; best.keras waits in memory between writes."""

from __future__ import annotations

import numpy as np
import pytest

from cvtrain import rundir
from cvtrain.state import resume


def tiny_model(seed: int):
    """A compiled model with BatchNorm statistics and a built Adam (moments, step count)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.rand(16, 4), np.random.rand(16, 3), batch_size=8, verbose=0)
    return model


def values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def scramble(model) -> None:
    """What the next epoch does to the variables while the last one is being written."""
    from cvtrain.state import snapshots

    for v in snapshots.training_variables(model):
        v.assign(np.full(v.shape, 7, v.dtype))


def saved_weights(path) -> list[np.ndarray]:
    import keras

    return values(keras.models.load_model(path).variables)


def test_best_checkpoint_is_written_at_most_once_per_interval_then_flushed(tmp_path):
    from cvtrain.state import snapshots
    from cvtrain.state.best_model import BestCheckpoint

    model = tiny_model(0)
    checkpoint = BestCheckpoint(tmp_path / "best.keras", write_every_s=3600)
    first = values(model.variables)
    assert checkpoint.offer(model, 1, 1.0, snapshots.take(model.variables))  # written at once
    assert_same(saved_weights(checkpoint.path), first)

    scramble(model)
    best = values(model.variables)
    assert checkpoint.offer(model, 2, 0.5, snapshots.take(model.variables))
    assert (checkpoint.best, checkpoint.best_epoch) == (0.5, 2)
    assert_same(saved_weights(checkpoint.path), first)  # within the interval: kept in memory

    for v in model.variables:
        v.assign(np.zeros(v.shape, v.dtype))
    current = values(model.variables)
    assert not checkpoint.offer(model, 3, 0.9, snapshots.take(model.variables))  # worse
    assert not checkpoint.offer(model, 4, float("nan"), snapshots.take(model.variables))
    checkpoint.flush(model)  # training ended or stopped
    assert_same(saved_weights(checkpoint.path), best)
    assert_same(values(model.variables), current)  # the model keeps its own weights

    due = BestCheckpoint(tmp_path / "every.keras", write_every_s=0)
    assert due.offer(model, 1, 1.0, snapshots.take(model.variables))
    assert_same(saved_weights(due.path), current)
    assert due.pending is None


class SlowestDisk:
    """BackgroundJobs on the slowest disk: a job runs only when the next one is submitted or
    the writes are waited for, after the next epoch has changed the variables."""

    def __init__(self, name: str):
        self.jobs: list = []

    def submit(self, job) -> None:
        self.wait()
        self.jobs.append(job)

    def wait(self) -> None:
        while self.jobs:
            self.jobs.pop(0)()


def test_epoch_state_is_the_variables_at_epoch_end_even_when_written_later(tmp_path, monkeypatch):
    from cvtrain.state import snapshots
    from cvtrain.state.best_model import BestCheckpoint
    from cvtrain.state.keeper import SaveResumeState

    monkeypatch.setattr("cvtrain.state.keeper.BackgroundJobs", SlowestDisk)
    model = tiny_model(0)
    saver = SaveResumeState(tmp_path, BestCheckpoint(tmp_path / "best.keras"), None, {"k": 1})
    saver.set_model(model)
    at_epoch_end = values(snapshots.training_variables(model))
    saver.on_epoch_end(0, {"val_loss": 1.0})
    scramble(model)  # the next epoch starts before the write is done
    saver.on_epoch_end(1, {"val_loss": 2.0})  # waits for epoch 1's write first
    saver.close()

    state = resume.load(tmp_path)
    assert (state.epoch, state.weights, state.best_epoch) == (2, "epoch-2.npz", 1)
    assert (state.best_weights, state.fixed) == ("epoch-1.npz", {"k": 1})
    backup = tmp_path / rundir.BACKUP
    assert_same(snapshots.read(backup / "epoch-1.npz"), at_epoch_end)
    assert_same(saved_weights(tmp_path / "best.keras"), at_epoch_end[: len(model.variables)])
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-1.npz", "epoch-2.npz", "state.json"]

    saver.on_epoch_end(2, {"val_loss": 0.5})  # a new best: the old files go
    saver.close()
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-3.npz", "state.json"]


def test_a_failed_state_write_is_raised_on_the_training_thread(tmp_path):
    from cvtrain.state.best_model import BestCheckpoint
    from cvtrain.state.keeper import SaveResumeState

    model = tiny_model(0)
    (tmp_path / rundir.BACKUP).write_text("not a folder")
    saver = SaveResumeState(tmp_path, BestCheckpoint(tmp_path / "best.keras"), None, {})
    saver.set_model(model)
    saver.on_epoch_end(0, {"val_loss": 1.0})
    with pytest.raises(OSError):
        saver.close()


@pytest.mark.parametrize("saved_by", ["cvtrain", "keras (runs saved by earlier versions)"])
def test_restore_puts_back_weights_and_optimizer(tmp_path, saved_by):
    """A new process numbers Keras's auto-named layers differently: the state must not care."""
    from cvtrain.state import snapshots
    from cvtrain.state.best_model import BestCheckpoint
    from cvtrain.state.keeper import restore

    trained = tiny_model(0)
    backup = tmp_path / rundir.BACKUP
    backup.mkdir()
    name = "epoch-1.npz" if saved_by == "cvtrain" else "epoch-1.weights.h5"
    if saved_by == "cvtrain":
        snapshots.write(backup / name, snapshots.take(snapshots.training_variables(trained)))
    else:
        trained.save_weights(backup / name)
    fresh = tiny_model(1)
    assert fresh.layers[0].name != trained.layers[0].name
    state = resume.ResumeState(epoch=1, weights=name, best=0.5, best_epoch=1, best_weights=name)
    checkpoint = BestCheckpoint(tmp_path / "best.keras")
    restore(fresh, tmp_path, state, checkpoint)

    expected = values(snapshots.training_variables(trained))
    assert_same(values(snapshots.training_variables(fresh)), expected)
    assert int(fresh.optimizer.iterations.numpy()) == 2
    assert_same(saved_weights(checkpoint.path), expected[: len(trained.variables)])
    assert (checkpoint.best, checkpoint.best_epoch) == (0.5, 1)
