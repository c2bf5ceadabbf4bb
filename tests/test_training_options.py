"""README claims about training options, each on a seconds-long run: early stopping and its
resume state, the cosine schedule, steps_per_execution, XLA, out of memory, the NaN exit code
and evaluating every sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_config, run_cli, tiny_segmentation, train_run
from helpers import train_in_process

from cvtrain.errors import UserError
from cvtrain.state import resume

QUIET = "trainer.prediction_images=0"


def test_each_optimizer_and_schedule_name_builds_its_keras_object():
    from cvtrain.config.schema import OptimizerConfig
    from cvtrain.training.optimizers import build_optimizer

    built = {
        name: build_optimizer(OptimizerConfig(name=name, momentum=0.5, schedule="cosine"), 10)
        for name in ("rmsprop", "adam", "sgd")
    }
    assert {n: type(o).__name__ for n, o in built.items()} == {
        "rmsprop": "RMSprop",
        "adam": "Adam",
        "sgd": "SGD",
    }
    assert built["rmsprop"].momentum == built["sgd"].momentum == 0.5
    assert type(built["adam"]._learning_rate).__name__ == "CosineDecay"
    constant = build_optimizer(OptimizerConfig(name="adam", lr=0.25), 10)
    assert float(constant.learning_rate) == 0.25


def train_keeping_the_model(monkeypatch, root, run_dir, *extra):
    """train_in_process, plus the very model train() compiled and fitted."""
    import cvtrain.training.trainer as training

    built = []
    build_model = training.build_model

    def build_and_keep(*args, **kwargs):
        built.append(build_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(training, "build_model", build_and_keep)
    result, _, split = train_in_process(root, run_dir, *extra)
    return result, split, built[-1]


@pytest.mark.slow
def test_early_stopping_stops_a_stalled_run_and_a_resume_keeps_counting(pets_root, tmp_path):
    stall = (
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.patience=2",
        "trainer.early_stopping.min_delta=10",  # no epoch can improve val_loss by 10
        QUIET,
    )
    run_dir = tmp_path / "run"
    first, _, _ = train_in_process(pets_root, run_dir, *stall)  # 2 epochs: the best, then 1 worse
    state = resume.load(run_dir)
    assert state.early_stopping["wait"] == 1 and not state.stopped_early
    assert state.early_stopping["best"] == pytest.approx(first.history["val_loss"][0])

    result, _, _ = train_in_process(pets_root, run_dir, *stall, "trainer.epochs=5")
    # The count goes on from 1: epoch 3 is the second without improvement, so 3 of 5 run.
    assert len(result.history["val_loss"]) == 3
    assert resume.load(run_dir).stopped_early

    # Stopped early, it stays stopped while early stopping is on; turned off, it goes on.
    again, _, _ = train_in_process(pets_root, run_dir, *stall, "trainer.epochs=6")
    assert len(again.history["val_loss"]) == 3
    more = (*stall, "trainer.epochs=4", "trainer.early_stopping.enabled=false")
    extended, _, _ = train_in_process(pets_root, run_dir, *more)
    assert len(extended.history["val_loss"]) == 4 and not resume.load(run_dir).stopped_early


@pytest.mark.slow
def test_cosine_schedule_decays_the_learning_rate_to_zero(pets_root, tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, cfg, _ = train_in_process(
        pets_root, tmp_path, "optimizer.schedule=cosine", "trainer.epochs=3", QUIET
    )
    events = EventAccumulator(str(tmp_path / "tensorboard" / "train"), {"tensors": 0})
    events.Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_learning_rate")]
    lr = cfg.optimizer.lr  # each epoch's end: 3/4, 1/4, then none of it left
    expected = [lr * (1 + math.cos(math.pi * epoch / 3)) / 2 for epoch in (1, 2, 3)]
    assert logged == pytest.approx(expected, rel=1e-4, abs=1e-9)


@pytest.mark.slow
def test_steps_per_execution_runs_every_batch(pets_root, tmp_path, monkeypatch):
    result, split, model = train_keeping_the_model(
        monkeypatch, pets_root, tmp_path, "trainer.steps_per_execution=3", QUIET
    )
    assert model.steps_per_execution == 3
    # 32 training samples in batches of 8: 4 steps per epoch, the last call runs the one left.
    steps = math.ceil(len(split.train) / 8)
    assert int(model.optimizer.iterations) == steps * 2 == 8
    assert len(result.history["loss"]) == 2


@pytest.mark.slow
def test_jit_compile_true_compiles_with_xla_and_trains(pets_root, tmp_path, monkeypatch):
    result, _, model = train_keeping_the_model(
        monkeypatch, pets_root, tmp_path, "trainer.jit_compile=true", "trainer.epochs=1", QUIET
    )
    assert model.jit_compile is True  # auto would be off on this CPU
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"]).all()


@pytest.mark.parametrize("where", ["fit", "build_and_compile"])  # in training, or before
def test_out_of_memory_names_the_batch_size_and_a_smaller_one(
    pets_root, tmp_path, monkeypatch, where
):
    import keras
    import tensorflow as tf

    from cvtrain.training import trainer

    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    if where == "fit":
        monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    else:
        monkeypatch.setattr(trainer, "build_and_compile", out_of_memory)
    with pytest.raises(UserError) as error:
        train_in_process(pets_root, tmp_path, "data.batch_size=8", QUIET)
    message = str(error.value)
    assert "\n" not in message
    assert "out of memory training with data.batch_size=8 " in message
    assert "try data.batch_size=4" in message


@pytest.mark.slow
def test_nan_loss_exits_2_with_one_line_naming_the_epoch(pets_root, tmp_path):
    overrides = tiny_segmentation(pets_root, "optimizer.lr=1e30", "trainer.epochs=1", QUIET)
    proc = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cvtrain: error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "loss became" in errors[0] and "in epoch 1 (batch" in errors[0]
    assert "Lower optimizer.lr (now 1e+30)" in errors[0]


@pytest.mark.slow
def test_eval_split_all_scores_every_sample(pets_root, tmp_path):
    from cvtrain.modes.evaluate import run

    run_dir = train_run(
        tmp_path / "run",
        *tiny_segmentation(pets_root, "trainer.epochs=1", "data.cache=disk", QUIET),
    )
    # data.cache=disk caches into the run dir; evaluation still reads every file.
    assert list((run_dir / "cache").glob("train-*.index"))
    assert list((run_dir / "cache").glob("val-*.index"))
    overrides = [f"run={run_dir}", "eval.split=all"]
    report = run(make_config("mode=evaluate", *overrides), overrides, tmp_path)
    assert report["split"] == "all" and report["data"]["files"] == 32 + 8
    assert report["metrics"]["pixels"] == 40 * 32 * 32  # every pixel of every sample scored


def test_a_pipeline_that_drops_every_validation_image_says_so():
    import tensorflow as tf

    from cvtrain.training.trainer import sample_batch

    images = tf.zeros([4, 8, 8, 3])
    dropped = tf.data.Dataset.from_tensor_slices((images, tf.zeros([4]))).filter(lambda x, y: False)
    with pytest.raises(UserError, match="no validation image came through the input pipeline"):
        sample_batch(dropped.batch(2), 2)


def test_validation_stuck_at_chance_says_why_and_what_to_set(caplog):
    """The chapter's mini_xception on a few hundred photos: validation accuracy 0.500 for epochs
    while training accuracy climbs (BatchNorm statistics lag); the log says so, once."""
    from cvtrain.data.index import FileIndex
    from cvtrain.tasks import get_task

    val = FileIndex("classification", ("a", "b", "c", "d"), (0, 1, 1, 0), ("cat", "dog"))
    (watch,) = get_task("classification").watchers(val, bn_momentum=0.99)
    epochs = [(0.55, 0.50), (0.62, 0.50), (0.70, 0.51), (0.75, 0.50), (0.80, 0.50)]
    with caplog.at_level("WARNING"):
        for epoch, (train, val_accuracy) in enumerate(epochs):
            watch.on_epoch_end(epoch, {"accuracy": train, "val_accuracy": val_accuracy})
    (record,) = [r for r in caplog.records if "chance" in r.getMessage()]
    message = record.getMessage()
    assert "for 3 epochs while training accuracy reached 0.750" in message
    assert "model.bn_momentum=0.9 (now 0.99)" in message

    caplog.clear()
    (healthy,) = get_task("classification").watchers(val, bn_momentum=0.99)
    for epoch, train in enumerate((0.55, 0.62, 0.70, 0.75)):
        healthy.on_epoch_end(epoch, {"accuracy": train, "val_accuracy": train - 0.05})
    assert not [r for r in caplog.records if "chance" in r.getMessage()]
    assert get_task("segmentation").watchers(val, bn_momentum=0.99) == []
