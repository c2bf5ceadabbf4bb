"""checkpoints/best.keras: the model of the epoch with the lowest val_loss, written atomically."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from cvtrain.rundir import atomic_path, write_json
from cvtrain.state import snapshots

# Saving a .keras file takes ~0.1 s for a small model and seconds for a large one: more than a
# short epoch can spare. While training runs, best.keras is rewritten at most this often; the
# best weights wait in memory (and in backup/, for a resume after a kill) until then, and are
# always written when training ends or stops.
WRITE_EVERY_S = 60.0


def save_model(model: keras.Model, path: Path, epoch: int | None) -> None:
    """`model` to `path` atomically, without its compile config: plain keras.models.load_model
    then opens it with no cvtrain loss or metric registered (compile it to evaluate it, or use
    mode=evaluate). The instance attribute hides the method for this one save. Then the epoch
    it holds beside it (best.json), which the modes that read a run compare with its state."""
    with atomic_path(path) as tmp:
        model.get_compile_config = lambda: None
        try:
            model.save(tmp)
        finally:
            del model.get_compile_config
    write_json(path.with_suffix(".json"), {"epoch": epoch})


class BestCheckpoint:
    """Keeps the best epoch so far; a worse epoch never overwrites best.keras."""

    monitor = "val_loss"

    def __init__(self, path: Path, best: float = math.inf, write_every_s: float = WRITE_EVERY_S):
        self.path, self.write_every_s = path, write_every_s
        self.best, self.best_epoch = best, None
        self.pending: snapshots.Snapshot | None = None  # the best weights, not yet in the file
        self.written_at = -math.inf

    def offer(self, model: keras.Model, epoch: int, value: float | None, weights) -> bool:
        """The model after `epoch` (1-based) scored `value`; `weights` are its model.variables
        (a snapshot) in case the file is written later. True if it is the new best."""
        improved = value is not None and math.isfinite(value) and value < self.best
        if improved:
            self.best, self.best_epoch = float(value), epoch
        due = time.monotonic() - self.written_at >= self.write_every_s
        if improved and due:
            self._write(model)
        elif improved:
            self.pending = weights
        elif due:
            self.flush(model)
        return improved

    def flush(self, model: keras.Model) -> None:
        """Write the pending best weights (the model's own are put back after)."""
        if self.pending is None:
            return
        current = snapshots.take(model.variables)
        snapshots.assign(model.variables, self.pending, "the best epoch's weights")
        try:
            self._write(model)
        finally:
            snapshots.assign(model.variables, current, "the current weights")

    def _write(self, model: keras.Model) -> None:
        save_model(model, self.path, self.best_epoch)
        self.pending, self.written_at = None, time.monotonic()
