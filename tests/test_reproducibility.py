"""Reproducibility: same seed + op determinism = same losses; the manifest pins the rest."""

from __future__ import annotations

import json
import platform
import shutil

import pytest
from conftest import make_config, tiny_segmentation

from cvtrain.data.sources import load_split


@pytest.fixture
def op_determinism_reset():
    """enable_op_determinism() lasts for the process; give later tests their default back."""
    yield
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()


def train_tiny(root, run_dir, *extra):
    from cvtrain.training.trainer import train

    cfg = make_config(*tiny_segmentation(root, "trainer.prediction_images=0", *extra))
    split, _ = load_split(cfg.data, cfg.task.name)
    return train(cfg, split, run_dir, state=None)


def test_trainer_seed_seeds_python_numpy_and_tensorflow():
    import random

    import numpy as np
    import tensorflow as tf

    from cvtrain.training.trainer import setup_runtime

    def draws():
        return random.random(), np.random.rand(), float(tf.random.uniform(()))

    setup_runtime(make_config("trainer.seed=123", "trainer.precision=float32").trainer)
    seeded = draws()
    random.seed(123)
    np.random.seed(123)
    tf.random.set_seed(123)
    assert draws() == seeded
    setup_runtime(make_config("trainer.seed=124", "trainer.precision=float32").trainer)
    assert all(a != b for a, b in zip(draws(), seeded))


def test_each_training_starts_from_a_cleared_keras_session():
    """Sweep jobs sharing a process: setup_runtime clears what the previous job left."""
    import keras

    from cvtrain.training.trainer import setup_runtime

    keras.layers.Dense(1), keras.layers.Dense(1)  # a previous job's layers
    setup_runtime(make_config("trainer.precision=float32").trainer)
    assert keras.layers.Dense(1).name == "dense"  # names start afresh


@pytest.mark.slow
def test_same_seed_and_determinism_give_identical_losses(pets_root, tmp_path, op_determinism_reset):
    flags = ("trainer.deterministic=true", "model.dropout=0.2", "data.augment.flip=true")
    first = train_tiny(pets_root, tmp_path / "a", *flags)
    second = train_tiny(pets_root, tmp_path / "b", *flags)
    other_seed = train_tiny(pets_root, tmp_path / "c", *flags, "trainer.seed=7")

    assert len(first.history["loss"]) == 2
    assert first.history == second.history  # every metric, every epoch, bit for bit
    assert other_seed.history["loss"] != first.history["loss"]  # the seed really is used

    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab"]
    assert manifests[0]["dataset"] == manifests[1]["dataset"]
    assert manifests[0]["seed"] == 42 and manifests[0]["deterministic"] is True


def test_manifest_records_code_versions_devices_and_data(pets_root, tmp_path):
    import tensorflow as tf

    from cvtrain.rundir.manifest import write

    cfg = make_config(*tiny_segmentation(pets_root, "trainer.seed=5"))
    split, _ = load_split(cfg.data, cfg.task.name)
    write(tmp_path / "manifest.json", cfg, split, "float32", 1234, None)
    manifest = json.loads((tmp_path / "manifest.json").read_text())

    assert manifest["seed"] == 5 and manifest["parameters"] == 1234
    assert len(manifest["git_commit"] or "") == 40  # the tests run from the git checkout
    assert manifest["python"] == platform.python_version()
    assert manifest["packages"]["tensorflow"] == tf.__version__
    assert any("CPU" in d for d in manifest["devices"]["logical"])
    assert {"gpus", "cuda", "cudnn"} <= set(manifest["devices"])  # GPU models, CUDA/cuDNN
    dataset = manifest["dataset"]
    assert (dataset["samples"], dataset["train"], dataset["val"]) == (40, 32, 8)


def test_dataset_fingerprint_follows_the_data_and_split_not_the_location(pets_root, tmp_path):
    from cvtrain.rundir.manifest import dataset_fingerprint

    def fingerprint(root, *extra):
        cfg = make_config(*tiny_segmentation(root, *extra))
        return dataset_fingerprint(load_split(cfg.data, cfg.task.name)[0])

    moved = shutil.copytree(pets_root, tmp_path / "elsewhere")
    base = fingerprint(pets_root)
    assert {k: v for k, v in fingerprint(moved).items() if k != "root"} == {
        k: v for k, v in base.items() if k != "root"
    }
    reshuffled = fingerprint(pets_root, "data.split_seed=1")
    assert reshuffled["index"] == base["index"] and reshuffled["split"] != base["split"]
    fewer = fingerprint(pets_root, "data.limit=30")
    assert fewer["index"] != base["index"] and fewer["samples"] == 30


@pytest.mark.slow
def test_debug_overfit_drives_the_training_loss_down(pets_root, tmp_path):
    from cvtrain.training.trainer import train

    preset = make_config("task=segmentation", "debug=overfit")
    assert preset.data.augment.flip is False and preset.trainer.epochs == 30
    cfg = make_config(
        "task=segmentation",
        "data=synthetic_pets",
        f"data.root={pets_root}",
        "data.num_samples=40",
        "data.image_size=[32,32]",
        "data.batch_size=8",
        "model.width=0.25",
        "optimizer=adam",
        "optimizer.lr=3e-3",
        "trainer.prediction_images=0",
        "debug=overfit",
        "trainer.epochs=6",  # the preset's 30 epochs, shortened for the test
    )
    split, _ = load_split(cfg.data, cfg.task.name)
    assert len(split.train) == 32  # the same four batches, every epoch
    losses = train(cfg, split, tmp_path, state=None).history["loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_debug_fast_is_one_short_epoch():
    cfg = make_config("task=segmentation", "debug=fast")
    assert cfg.trainer.epochs == 1 and cfg.data.limit == 64 and cfg.data.val_fraction == 0.25
