"""Training in-process: the loss falls, the best checkpoint is the best epoch's model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config
from helpers import checkpoint_scores

from cvtrain import rundir


@pytest.mark.slow
def test_training_loss_falls_and_best_checkpoint_matches_best_epoch(adam_run):
    result, cfg, split, run_dir = adam_run  # conftest's: 4 epochs of Adam, tiny data
    assert len(result.history["loss"]) == 4

    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.best_val_loss == min(result.history["val_loss"])
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1

    scores = checkpoint_scores(run_dir, cfg, split)
    assert np.isclose(scores["loss"], result.best_val_loss, rtol=1e-3)
    assert rundir.read_json(run_dir / rundir.CHECKPOINT_EPOCH) == {"epoch": result.best_epoch}


def test_precision_auto_is_mixed_float16_on_a_gpu_and_float32_on_cpu():
    import keras
    import tensorflow as tf

    from cvtrain.training.trainer import resolve_precision, setup_runtime

    assert resolve_precision("auto", has_gpu=False) == "float32"
    assert resolve_precision("auto", has_gpu=True) == "mixed_float16"
    for has_gpu in (False, True):  # an explicit choice wins on any machine
        assert resolve_precision("mixed_bfloat16", has_gpu) == "mixed_bfloat16"
        assert resolve_precision("float32", has_gpu) == "float32"

    # Training asks this machine: whatever it has, auto becomes the global policy for its kind.
    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    try:
        assert setup_runtime(make_config("trainer.precision=auto").trainer) == expected
        assert keras.mixed_precision.dtype_policy().name == expected
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
