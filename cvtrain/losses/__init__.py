"""Losses by config name (`loss=`): which tasks each fits, the settings it reads, its builder.

Pure Python until one is built, so config validation refuses a loss that does not fit the task
before TensorFlow loads. The losses themselves are in cvtrain/losses/pixelwise.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvtrain.errors import ConfigError
from cvtrain.registry import resolve
from cvtrain.tasks.specs import CLASSIFICATION, DETECTION, SEGMENTATION, SPECS

if TYPE_CHECKING:
    import keras

    from cvtrain.config.schema import LossConfig


@dataclass(frozen=True)
class LossSpec:
    builder: str  # "module:class", called with the class weights and the loss.* keys in `uses`
    tasks: tuple[str, ...]  # the tasks it can train
    uses: tuple[str, ...] = ()  # the loss.* keys it reads besides class_weights

    @property
    def settings(self) -> tuple[str, ...]:
        """Every loss.* key that shapes this loss; a resumed run locks them (state.resume)."""
        return ("name", "class_weights", *self.uses)


# Classification trains with its head's own cross-entropy (binary for one sigmoid unit, sparse
# categorical for a softmax): crossentropy is the only loss it takes, so it never builds one here.
LOSSES: dict[str, LossSpec] = {
    "crossentropy": LossSpec(
        "cvtrain.losses.pixelwise:Crossentropy", (SEGMENTATION, CLASSIFICATION)
    ),
    "dice": LossSpec("cvtrain.losses.pixelwise:Dice", (SEGMENTATION,)),
    "crossentropy_dice": LossSpec("cvtrain.losses.pixelwise:CrossentropyDice", (SEGMENTATION,)),
    "focal": LossSpec("cvtrain.losses.pixelwise:Focal", (SEGMENTATION,), ("gamma",)),
    # focal loss on each anchor's classes, smooth L1 on its box; built by the detection task,
    # which knows the anchors
    "retinanet": LossSpec("cvtrain.losses.anchorwise:RetinaNetLoss", (DETECTION,), ("gamma",)),
}


def check_loss(cfg: LossConfig, task: str) -> None:
    """Raise ConfigError if `cfg` cannot train `task`."""
    if task not in LOSSES[cfg.name].tasks:
        fitting = [name for name, spec in LOSSES.items() if task in spec.tasks]
        raise ConfigError(
            f"loss={cfg.name} is a {', '.join(LOSSES[cfg.name].tasks)} loss; task={task} "
            f"takes {', '.join(fitting)}"
        )
    if cfg.class_weights != "none" and not SPECS[task].dense:
        raise ConfigError(
            f"loss.class_weights={cfg.class_weights} weighs mask pixels; task={task} takes "
            "loss.class_weights=none"
        )


def build_loss(cfg: LossConfig, class_weights: Sequence[float] | None) -> keras.losses.Loss:
    spec = LOSSES[cfg.name]
    settings = {key: getattr(cfg, key) for key in spec.uses}
    return resolve(spec.builder)(class_weights=class_weights, **settings)
