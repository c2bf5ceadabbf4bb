"""TensorBoard HParams: every run logs its hyperparameters and its best validation metrics.

`tensorboard --logdir <sweep_dir>` then lists each job in the HParams dashboard (one session
per run dir's tensorboard/), with its config next to best_val_loss and the other val metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import keras
from tensorboard.plugins.hparams import api as hp

from cvtrain.config.schema import RunConfig, to_dict
from cvtrain.tracking.tensorboard_events import EventWriter

# The config sections that shape a training run (the rest configure other modes).
SECTIONS = ("task", "data", "model", "optimizer", "trainer")

HParamValue = bool | int | float | str


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, HParamValue]:
    """Dotted keys with values TensorBoard accepts: lists become JSON text, None "null"."""
    flat: dict[str, HParamValue] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def run_hparams(cfg: RunConfig) -> dict[str, HParamValue]:
    tree = to_dict(cfg)
    return flatten({k: tree[k] for k in SECTIONS})


class HParams(keras.callbacks.Callback):
    """Writes the hparams when training starts (a crashed job still shows up) and the best
    val_loss with the val metrics of that epoch after each improvement."""

    def __init__(self, log_dir: Path, hparams: dict[str, HParamValue], trial_id: str):
        super().__init__()
        self.log_dir, self.hparams, self.trial_id = log_dir, hparams, trial_id
        self.best = math.inf

    def on_train_begin(self, logs=None):
        self.writer = EventWriter(self.log_dir)
        self.writer.summary(hp.hparams_pb(self.hparams, trial_id=self.trial_id))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("val_loss")
        if loss is None or not math.isfinite(loss) or loss >= self.best:
            return
        self.best = float(loss)
        best = {f"best_{k}": v for k, v in logs.items() if k.startswith("val_")}
        self.writer.scalars(best, epoch)

    def on_train_end(self, logs=None):
        self.writer.close()
