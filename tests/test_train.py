"""Training in-process: the loss falls, the best checkpoint is the best epoch's model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config, tiny_segmentation

from cvtrain.data.sources import load_split


@pytest.mark.slow
def test_training_loss_falls_and_best_checkpoint_matches_best_epoch(pets_root, tmp_path):
    import keras

    from cvtrain.data.pipeline import build_dataset
    from cvtrain.train import train

    cfg = make_config(*tiny_segmentation(pets_root, "trainer.epochs=4", "optimizer=adam"))
    split, _ = load_split(cfg.data, cfg.task.name)
    result = train(cfg, split, tmp_path)

    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.best_val_loss == min(result.history["val_loss"])
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1

    model = keras.models.load_model(tmp_path / "checkpoints" / "best.keras")
    val = build_dataset(split.val, cfg.data, training=False, seed=0)
    scores = model.evaluate(val, verbose=0, return_dict=True)
    assert np.isclose(scores["loss"], result.best_val_loss, rtol=1e-3)


def test_precision_auto_is_float32_on_cpu():
    from cvtrain.train import resolve_precision

    assert resolve_precision("auto") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
