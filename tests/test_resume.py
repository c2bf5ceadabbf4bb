"""Resume: a killed run continues from its last completed epoch; finished runs extend; a NaN
stops with the best checkpoint kept; incompatible changes are refused."""

from __future__ import annotations

import signal

import pytest
from conftest import make_config, run_cli, tiny_classification, tiny_segmentation
from helpers import (
    checkpoint_scores,
    history_rows,
    start_cli,
    train_in_process,
    wait_for_rows,
)

from cvtrain import rundir
from cvtrain.errors import ConfigError
from cvtrain.state import resume


@pytest.mark.slow
def test_sigkill_after_epoch_2_of_4_then_resume_ends_at_epoch_4(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    slow = ("trainer.epochs=4", "trainer.steps_per_epoch=12", "trainer.prediction_images=0")
    proc = start_cli(pets_root, run_dir, *slow)
    wait_for_rows(proc, run_dir, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = resume.load(run_dir)
    assert saved is not None and saved.epoch in (1, 2, 3)  # the last epoch committed

    done = run_cli(f"resume={run_dir}")  # the short form: the run's own overrides + run dir
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming after epoch" in done.stdout + done.stderr
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    val_losses = [float(r["val_loss"]) for r in rows]
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    assert metrics["best_epoch"] == val_losses.index(min(val_losses)) + 1
    assert metrics["best_val_loss"] == pytest.approx(min(val_losses))
    cfg = make_config(*tiny_segmentation(pets_root, *slow))
    from cvtrain.data.sources import load_split

    split, _ = load_split(cfg.data, cfg.task.name)
    assert checkpoint_scores(run_dir, cfg, split)["loss"] == pytest.approx(
        min(val_losses), rel=1e-3
    )


@pytest.mark.slow
def test_finished_run_extends_from_2_to_3_epochs_with_tensorboard_continued(pets_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    first, _, _ = train_in_process(pets_root, run_dir, "trainer.prediction_images=0")
    assert resume.load(run_dir).epoch == 2  # the state outlives a finished run
    best_before = first.best_val_loss

    result, cfg, split = train_in_process(
        pets_root, run_dir, "trainer.epochs=3", "trainer.prediction_images=0"
    )
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert len(result.history["loss"]) == 3
    assert result.best_val_loss <= best_before  # the best so far carried across the resume
    assert resume.load(run_dir).epoch == 3
    val_losses = [float(r["val_loss"]) for r in rows]
    assert checkpoint_scores(run_dir, cfg, split)["loss"] == pytest.approx(
        min(val_losses), rel=1e-3
    )

    events = EventAccumulator(str(run_dir / "tensorboard" / "train"))
    events.Reload()
    tag = next(t for t in events.Tags()["tensors"] + events.Tags()["scalars"] if "loss" in t)
    steps = sorted(
        {e.step for e in (events.Tensors(tag) if tag in events.Tags()["tensors"] else [])}
        | {e.step for e in (events.Scalars(tag) if tag in events.Tags()["scalars"] else [])}
    )
    assert steps == [1, 2, 3]  # epochs as the CLI counts them, continued across the resume

    # Running the finished command again trains nothing and keeps the history.
    train_in_process(pets_root, run_dir, "trainer.epochs=3", "trainer.prediction_images=0")
    assert len(history_rows(run_dir)) == 3


@pytest.mark.slow
def test_nan_loss_stops_with_the_epoch_and_keeps_best_checkpoint(pets_root, tmp_path):
    from cvtrain.state.keeper import NonFiniteLoss

    run_dir = tmp_path / "run"
    _, cfg, split = train_in_process(
        pets_root, run_dir, "trainer.epochs=1", "trainer.prediction_images=0"
    )
    best = checkpoint_scores(run_dir, cfg, split)["loss"]

    with pytest.raises(NonFiniteLoss, match=r"in epoch 2 \(batch \d+\).*best.keras \(epoch 1"):
        train_in_process(
            pets_root,
            run_dir,
            "trainer.epochs=3",
            "optimizer.lr=1e30",
            "trainer.prediction_images=0",
        )
    assert checkpoint_scores(run_dir, cfg, split)["loss"] == pytest.approx(best, rel=1e-5)
    assert resume.load(run_dir).epoch == 1  # resumable from the last good epoch
    assert len(history_rows(run_dir)) == 1

    # With a sane learning rate the same run continues (the new lr is used, not the saved one).
    result, _, _ = train_in_process(
        pets_root, run_dir, "trainer.epochs=2", "trainer.prediction_images=0"
    )
    assert len(result.history["loss"]) == 2


@pytest.mark.slow
def test_a_run_that_fails_keeps_its_last_epoch_and_its_best_model(pets_root, tmp_path):
    """The last epoch's state is still being written and best.keras waits in memory (it is
    written at most once a minute) when the run fails: both must reach the disk."""
    import keras

    from cvtrain.data.sources import load_split
    from cvtrain.training.trainer import train

    class FailsAtEpoch4(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("disk on fire")

    run_dir = tmp_path / "run"
    cfg = make_config(
        *tiny_segmentation(pets_root, "trainer.epochs=5", "trainer.prediction_images=0")
    )
    split, _ = load_split(cfg.data, cfg.task.name)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(cfg, split, run_dir, None, callbacks=[FailsAtEpoch4()])

    val_losses = [float(r["val_loss"]) for r in history_rows(run_dir)]
    assert len(val_losses) == 3
    state = resume.load(run_dir)
    assert state.epoch == 3
    assert state.best_epoch == val_losses.index(min(val_losses)) + 1
    assert state.best_epoch > 1, "needs a best epoch after the first (written at once)"
    assert checkpoint_scores(run_dir, cfg, split)["loss"] == pytest.approx(
        min(val_losses), rel=1e-3
    )


PETS = ("pet", "background", "border")  # the synthetic pets' classes, in id order


def test_changing_model_or_image_size_is_refused(pets_root, tmp_path):
    cfg = make_config(*tiny_segmentation(pets_root))
    state = resume.ResumeState(epoch=1, weights="epoch-1.weights.h5")
    state.fixed = resume.fixed_settings(cfg, PETS)
    resume.save(tmp_path, state)
    (tmp_path / rundir.BACKUP / state.weights).touch()  # the file the state names

    assert resume.check_compatible(tmp_path, make_config(*tiny_segmentation(pets_root)), PETS)
    same_but_lr = make_config(
        *tiny_segmentation(pets_root, "optimizer.lr=1e-4", "trainer.epochs=9")
    )
    assert resume.check_compatible(tmp_path, same_but_lr, PETS).epoch == 1
    wider = make_config(*tiny_segmentation(pets_root, "model.width=0.5"))
    with pytest.raises(ConfigError, match=r"model.width=0.25 \(now 0.5\)"):
        resume.check_compatible(tmp_path, wider, PETS)
    bigger = make_config(*tiny_segmentation(pets_root, "data.image_size=[48,48]"))
    with pytest.raises(ConfigError, match=r"data.image_size=\[32, 32\] \(now \[48, 48\]\)"):
        resume.check_compatible(tmp_path, bigger, PETS)
    adam = make_config(*tiny_segmentation(pets_root, "optimizer=adam"))
    with pytest.raises(ConfigError, match=r"optimizer.name=rmsprop \(now adam\)"):
        resume.check_compatible(tmp_path, adam, PETS)
    more = (*PETS, "toy")
    with pytest.raises(ConfigError, match=r"classes=\['pet', 'background', 'border'\] \(now \["):
        resume.check_compatible(tmp_path, make_config(*tiny_segmentation(pets_root)), more)
    swapped = ("background", "pet", "border")
    with pytest.raises(ConfigError, match=r"classes=\['pet', 'background', 'border'\] \(now \["):
        resume.check_compatible(tmp_path, make_config(*tiny_segmentation(pets_root)), swapped)
    classifier = make_config(*tiny_classification(tmp_path / "shapes"))
    with pytest.raises(ConfigError, match=r"task.name=segmentation \(now classification\)"):
        resume.check_compatible(tmp_path, classifier, PETS)


def test_only_the_settings_the_model_reads_are_locked(pets_root, tmp_path):
    cfg = make_config(*tiny_segmentation(pets_root, "model=seg_convnet"))
    state = resume.ResumeState(epoch=1, weights="epoch-1.weights.h5")
    state.fixed = resume.fixed_settings(cfg, PETS)
    resume.save(tmp_path, state)
    (tmp_path / rundir.BACKUP / state.weights).touch()  # the file the state names

    # seg_convnet has no ASPP: atrous rates are not one of its keys, nor locked.
    assert "model.atrous_rates" not in state.fixed and "model.filters" in state.fixed
    with pytest.raises(ConfigError, match="unknown key 'model.atrous_rates'"):
        make_config(*tiny_segmentation(pets_root, "model.atrous_rates=[2,4]"))
    assert resume.check_compatible(tmp_path, cfg, PETS).epoch == 1
    fewer_stages = make_config(*tiny_segmentation(pets_root, "model.filters=[8,16]"))
    with pytest.raises(ConfigError, match=r"model.filters=\[64, 128, 256\] \(now \[8, 16\]\)"):
        resume.check_compatible(tmp_path, fewer_stages, PETS)

    # A state saved when every model.* key was locked (runs before typed model settings)
    # continues too: only the keys this model has are compared.
    state.fixed["model.atrous_rates"] = [6, 12, 18]
    resume.save(tmp_path, state)
    assert resume.check_compatible(tmp_path, cfg, PETS).epoch == 1


def test_history_rows_after_the_saved_state_are_dropped(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    resume.trim_history(path, 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.9"]
    resume.trim_history(path, 0)
    assert not path.exists()


def test_resume_short_form_reuses_saved_overrides(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "- data=synthetic_pets\n- trainer.epochs=2\n- model.width=0.25\n"
    )
    argv = resume.expand_resume_arg([f"resume={run}", "trainer.epochs=5"])
    assert argv == [
        "data=synthetic_pets",
        "model.width=0.25",
        "trainer.epochs=5",
        f"hydra.run.dir={run.resolve()}",
    ]
    with pytest.raises(ConfigError, match="not a cvtrain run dir"):
        resume.expand_resume_arg([f"resume={tmp_path}"])
    assert resume.expand_resume_arg(["trainer.epochs=5"]) == ["trainer.epochs=5"]


@pytest.mark.slow
def test_resume_restores_the_optimizer_state_with_the_weights(adam_run, tmp_path):
    """backup/ holds the optimizer too: a resumed Adam continues its step count and moments
    (a fresh optimizer would restart both at zero)."""
    import shutil

    import numpy as np
    import tensorflow as tf

    from cvtrain.state.resume import check_compatible
    from cvtrain.tasks import get_task
    from cvtrain.training import trainer as training
    from cvtrain.training.inputs import build_inputs

    _, cfg, split, trained = adam_run  # conftest's: 4 epochs of Adam, tiny data
    run = shutil.copytree(trained, tmp_path / "run")  # resumed here, not in the shared run
    state = check_compatible(run, cfg, split.train.class_names, split.train.mask_values)
    assert state.epoch == cfg.trainer.epochs == 4
    training.setup_runtime(cfg.trainer)
    inputs = build_inputs(cfg, split, run)
    strategy = tf.distribute.get_strategy()
    model = training.build_and_compile(cfg, get_task(cfg.task.name), split, inputs.steps, strategy)
    assert int(model.optimizer.iterations) == 0
    training.continue_from(state, run, run, model, cfg, strategy)
    assert int(model.optimizer.iterations) == 4 * inputs.steps
    moments = [v for v in model.optimizer.variables if v.path.endswith(("momentum", "velocity"))]
    assert len(moments) == 2 * len(model.trainable_variables)
    assert all(np.any(keras_value(v) != 0) for v in moments)


def keras_value(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)
