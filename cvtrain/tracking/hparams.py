"""TensorBoard HParams: every run logs what describes it and the val metrics of its best epoch.

`tensorboard --logdir <sweep_dir>` then lists each job in the HParams dashboard (one session
per run dir's tensorboard/, named by the job and what it changed), with the swept settings
first (TensorBoard puts the ones that differ first) next to at_best_epoch/val_loss and the
other val metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
from tensorboard.plugins.hparams import api as hp

from cvtrain.config.schema import RunConfig, to_dict
from cvtrain.state.resume import override_key
from cvtrain.tracking.tensorboard_events import EventWriter

if TYPE_CHECKING:
    from cvtrain.training.callbacks import ReportToTrial

# The config sections that shape a training run (the rest configure other modes).
SECTIONS = ("task", "data", "model", "loss", "optimizer", "trainer")
# Shown for every run besides what it set: what most often tells runs apart.
KEY_HPARAMS = (
    "task.name",
    "model.name",
    "data.image_size",
    "data.batch_size",
    "optimizer.name",
    "optimizer.lr",
    "trainer.epochs",
)
AT_BEST_EPOCH = "at_best_epoch"  # the tag group of the val metrics of the best epoch so far

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
    """Every setting that shapes the training (MLflow's params)."""
    tree = to_dict(cfg)
    return flatten({k: tree[k] for k in SECTIONS})


def setting_of(override: str, known: Collection[str]) -> str | None:
    """The setting an override sets: `optimizer.lr=0.01` -> optimizer.lr, a group choice
    `model=unet` -> model.name; None for anything else (hydra.*, experiment=)."""
    key = override_key(override)
    return next((k for k in (key, f"{key}.name") if k in known), None)


def session_hparams(
    cfg: RunConfig, overrides: Sequence[str], swept: Sequence[str]
) -> dict[str, HParamValue]:
    """What describes this run in the HParams table: the keys its sweep varies, what its
    command line set, then KEY_HPARAMS; not the dozens of defaults every run shares."""
    flat = run_hparams(cfg)
    keys = [*swept, *(setting_of(o, flat) for o in overrides), *KEY_HPARAMS]
    return {k: flat[k] for k in dict.fromkeys(keys) if k in flat}


def session_name(run_dir: Path, overrides: Sequence[str], swept: Sequence[str]) -> str:
    """Short and telling: `<time>/<job> optimizer.lr=0.003` for a sweep job (what it changed),
    `<date>/<time>` for a run."""
    changed = [o for o in overrides if override_key(o) in swept]
    return " ".join([f"{run_dir.parent.name}/{run_dir.name}", *changed])


class HParams(keras.callbacks.Callback):
    """The session's hparams when training starts (a crashed job still shows up); after every
    epoch the val metrics of the best epoch so far (by val_loss) as `at_best_epoch/val_*`, so
    they draw as curves; `pruned_at_epoch` when a sweep's pruner stopped the run."""

    def __init__(
        self,
        log_dir: Path,
        hparams: dict[str, HParamValue],
        session: str,
        best: float = math.inf,  # a resumed run's best val_loss
        pruner: ReportToTrial | None = None,
    ):
        super().__init__()
        self.log_dir, self.hparams, self.session = log_dir, hparams, session
        self.best, self.pruner = best, pruner
        self.at_best: dict[str, float] = {}

    def on_train_begin(self, logs=None):
        self.writer = EventWriter(self.log_dir)
        self.writer.summary(hp.hparams_pb(self.hparams, trial_id=self.session))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("val_loss")
        if loss is not None and math.isfinite(loss) and loss < self.best:
            self.best = float(loss)
            self.at_best = {f"{AT_BEST_EPOCH}/{k}": v for k, v in logs.items() if k[:4] == "val_"}
        if self.at_best:
            self.writer.scalars(self.at_best, epoch + 1)

    def on_train_end(self, logs=None):
        if self.pruner and self.pruner.pruned_at:
            self.writer.scalars({"pruned_at_epoch": self.pruner.pruned_at}, self.pruner.pruned_at)
        self.writer.close()
