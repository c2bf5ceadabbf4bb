"""What the schema cannot check alone: names against the registries, and parts against each other.

cvtrain.config.schema checks each key by itself; here the data source and the model name the
classes of their own settings, every part a config names (task, model, backbone, optimizer,
schedule, loss, data source) must be registered, and the parts must fit: a model that cannot
work at the image size, a data source or a loss of another task. Pure Python,
like the registries' tables: it runs before TensorFlow is imported. The modes' own needs
(`run=`, `input=`, an export format's extra) are the CLI's checks (cvtrain.cli.validate).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig

from cvtrain.config.schema import DataConfig, RunConfig, check, choice, merge
from cvtrain.data.sources import check_source, config_of_source
from cvtrain.losses import LOSSES, check_loss
from cvtrain.models import check_model, config_of_model
from cvtrain.tasks import TASKS
from cvtrain.training.optimizers import OPTIMIZERS, SCHEDULES


def load(cfg: DictConfig | dict[str, Any], *, saved: bool = False) -> RunConfig:
    """A composed (or a saved run's) config in the schema, its data and model in their own
    settings classes, every part it names registered; ConfigError with one line otherwise.
    `saved`: a run's config, whose data and model may hold keys of other kinds (runs written
    when every source and model shared one flat class)."""
    run = merge(cfg, {"data": config_of_source, "model": config_of_model}, own_keys_only=saved)
    check_components(run)
    return run


def check_components(cfg: RunConfig) -> None:
    """Every part the config names is registered (the source and model: by merge)."""
    choice(cfg.task.name, "task.name", tuple(TASKS))
    choice(cfg.optimizer.name, "optimizer.name", tuple(OPTIMIZERS))
    choice(cfg.optimizer.schedule, "optimizer.schedule", tuple(SCHEDULES))
    choice(cfg.loss.name, "loss.name", tuple(LOSSES))


def check_training(cfg: RunConfig) -> None:
    """The data source, the model and the loss fit the task and each other."""
    check_source(cfg.data.source, cfg.task.name)
    check_model(cfg.model, tuple(cfg.data.image_size), cfg.task.name)
    check_loss(cfg.loss, cfg.task.name)
    check_batch_fits(cfg.data, physical_memory())


FLOAT32_RGB_BYTES = 3 * 4  # one pixel of a decoded, resized image as the pipeline holds it


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_fits(data: DataConfig, memory: int) -> None:
    """One batch of images alone larger than the machine's memory is refused before TensorFlow
    loads: its pipeline would fail on every image, and tf.data drops failed images silently."""
    height, width = data.image_size
    needed = data.batch_size * height * width * FLOAT32_RGB_BYTES
    check(
        needed <= memory,
        "data.image_size",
        f"{list(data.image_size)} with data.batch_size={data.batch_size} needs "
        f"{needed / 2**30:.1f} GiB for one batch of images alone, more than this machine's "
        f"{memory / 2**30:.1f} GiB; use a smaller data.image_size or data.batch_size",
    )
