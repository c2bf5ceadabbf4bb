"""Losses by config name (`loss=`): which tasks each fits, the settings it reads, its builder.

Pure Python until one is built, so config validation refuses a loss that does not fit the task
before TensorFlow loads. The losses themselves are in cvtrain/pixel_losses.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvtrain.data.index import CLASSIFICATION, SEGMENTATION
from cvtrain.errors import ConfigError
from cvtrain.registry import resolve

if TYPE_CHECKING:
    import keras

    from cvtrain.config import LossConfig


@dataclass(frozen=True)
class LossSpec:
    builder: str  # "module:class", called with the class weights and the loss.* keys in `uses`
    tasks: tuple[str, ...]  # the tasks it can train
    uses: tuple[str, ...] = ()  # the loss.* keys it reads besides class_weights

    @property
    def settings(self) -> tuple[str, ...]:
        """Every loss.* key that shapes this loss; a resumed run locks them (cvtrain.resume)."""
        return ("name", "class_weights", *self.uses)


# Classification trains with its head's own cross-entropy (binary for one sigmoid unit, sparse
# categorical for a softmax): crossentropy is the only loss it takes, so it never builds one here.
LOSSES: dict[str, LossSpec] = {
    "crossentropy": LossSpec("cvtrain.pixel_losses:Crossentropy", (SEGMENTATION, CLASSIFICATION)),
    "dice": LossSpec("cvtrain.pixel_losses:Dice", (SEGMENTATION,)),
    "crossentropy_dice": LossSpec("cvtrain.pixel_losses:CrossentropyDice", (SEGMENTATION,)),
    "focal": LossSpec("cvtrain.pixel_losses:Focal", (SEGMENTATION,), ("gamma",)),
}
# Tasks whose class weights weigh mask pixels (loss.class_weights).
WEIGHTED_TASKS = (SEGMENTATION,)


def check_loss(cfg: LossConfig, task: str) -> None:
    """Raise ConfigError if `cfg` cannot train `task`."""
    if task not in LOSSES[cfg.name].tasks:
        fitting = [name for name, spec in LOSSES.items() if task in spec.tasks]
        raise ConfigError(
            f"loss={cfg.name} is a {', '.join(LOSSES[cfg.name].tasks)} loss; task={task} "
            f"takes {', '.join(fitting)}"
        )
    if cfg.class_weights != "none" and task not in WEIGHTED_TASKS:
        raise ConfigError(
            f"loss.class_weights={cfg.class_weights} weighs mask pixels; task={task} takes "
            "loss.class_weights=none"
        )


def build_loss(cfg: LossConfig, class_weights: Sequence[float] | None) -> keras.losses.Loss:
    spec = LOSSES[cfg.name]
    settings = {key: getattr(cfg, key) for key in spec.uses}
    return resolve(spec.builder)(class_weights=class_weights, **settings)
