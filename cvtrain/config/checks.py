"""What the schema cannot check alone: names against the registries, and parts against each other.

cvtrain.config.schema checks each key by itself; here every part a config names (task, model,
backbone, optimizer, schedule, loss, data source) must be registered, and the parts must fit: a
model that cannot work at the image size, a data source or a loss of another task. Pure Python,
like the registries' tables: it runs before TensorFlow is imported. The modes' own needs
(`run=`, `input=`, an export format's extra) are the CLI's checks (cvtrain.cli.validate).
"""

from __future__ import annotations

import os

from cvtrain.config.schema import DataConfig, RunConfig, check, choice
from cvtrain.data.sources import check_source
from cvtrain.losses import LOSSES, check_loss
from cvtrain.models import MODELS, check_model
from cvtrain.models.backbone_specs import BACKBONES
from cvtrain.tasks import TASKS
from cvtrain.training.optimizers import OPTIMIZERS, SCHEDULES


def check_components(cfg: RunConfig) -> None:
    """Every part the config names is registered (a saved run's config is checked so too)."""
    choice(cfg.task.name, "task.name", tuple(TASKS))
    choice(cfg.model.name, "model.name", tuple(MODELS))
    choice(cfg.model.backbone, "model.backbone", ("none", *BACKBONES))
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
