"""Optimizers and learning-rate schedules by config name: the names config validation offers.

Pure Python until one is built (each entry is given the keras module), so validating
`optimizer.name` never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from cvtrain.config.schema import OptimizerConfig

# optimizer.name -> (keras, learning rate or schedule, config) -> optimizer
OPTIMIZERS: dict[str, Callable[[Any, Any, OptimizerConfig], keras.optimizers.Optimizer]] = {
    "rmsprop": lambda keras, lr, cfg: keras.optimizers.RMSprop(lr, momentum=cfg.momentum),
    "adam": lambda keras, lr, cfg: keras.optimizers.Adam(lr),
    "sgd": lambda keras, lr, cfg: keras.optimizers.SGD(lr, momentum=cfg.momentum),
}
# optimizer.schedule -> (keras, base learning rate, total steps) -> learning rate or schedule
SCHEDULES: dict[str, Callable[[Any, float, int], Any]] = {
    "constant": lambda keras, lr, steps: lr,
    "cosine": lambda keras, lr, steps: keras.optimizers.schedules.CosineDecay(
        lr, decay_steps=max(1, steps)
    ),
}


def build_optimizer(cfg: OptimizerConfig, total_steps: int) -> keras.optimizers.Optimizer:
    import keras

    lr = SCHEDULES[cfg.schedule](keras, cfg.lr, total_steps)
    return OPTIMIZERS[cfg.name](keras, lr, cfg)
