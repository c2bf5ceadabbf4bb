"""Data sources by name (`data.source`): each turns a DataConfig into a verified FileIndex."""

from __future__ import annotations

from collections.abc import Callable

from cvtrain.config.schema import DataConfig
from cvtrain.data.index import FileIndex, Split, sniff_image, split_index
from cvtrain.data.mask_folder import with_mapping
from cvtrain.errors import ConfigError, DataError
from cvtrain.registry import resolve
from cvtrain.tasks.specs import CLASSIFICATION, DETECTION, SEGMENTATION

# name -> (task, "module:function"); imported on use so one source's dependencies never slow
# another, and the task is known before a source downloads or generates anything.
SOURCES: dict[str, tuple[str, str]] = {
    "oxford_pets": (SEGMENTATION, "cvtrain.data.oxford_pets:load_index"),
    "synthetic_pets": (SEGMENTATION, "cvtrain.data.synthetic_pets:load_index"),
    "mask_folder": (SEGMENTATION, "cvtrain.data.mask_folder:load_index"),
    "voc": (SEGMENTATION, "cvtrain.data.voc:load_index"),
    "image_folder": (CLASSIFICATION, "cvtrain.data.image_folder:load_index"),
    "cats_vs_dogs": (CLASSIFICATION, "cvtrain.data.cats_vs_dogs:load_index"),
    "oxford_pets_species": (CLASSIFICATION, "cvtrain.data.oxford_pets:load_species"),
    "oxford_pets_breeds": (CLASSIFICATION, "cvtrain.data.oxford_pets:load_breeds"),
    "synthetic_shapes": (CLASSIFICATION, "cvtrain.data.synthetic_shapes:load_index"),
    "oxford_pets_heads": (DETECTION, "cvtrain.data.oxford_pets:load_heads"),
    "detection_folder": (DETECTION, "cvtrain.data.detection_folder:load_index"),
    "synthetic_boxes": (DETECTION, "cvtrain.data.synthetic_boxes:load_index"),
}


def check_source(source: str, task: str) -> None:
    """Raise ConfigError unless `source` exists and serves `task` (config validation and every
    load call this, so a mismatch is reported before anything is read or downloaded)."""
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} is unknown; choose one of {', '.join(SOURCES)}")
    source_task = SOURCES[source][0]
    if source_task != task:
        choices = ", ".join(name for name, (t, _) in SOURCES.items() if t == task)
        raise ConfigError(
            f"data={source} is a {source_task} dataset but task={task}; use one of: {choices}"
        )


def _loader(source: str, task: str) -> Callable[[DataConfig], FileIndex]:
    check_source(source, task)
    return resolve(SOURCES[source][1])


def load_index(cfg: DataConfig, task: str) -> tuple[FileIndex, list[str]]:
    """The source's index with files that are not images dropped; returns (index, dropped)."""
    index = _loader(cfg.source, task)(cfg)
    if index.has_masks:
        index = with_mapping(index, cfg)
    readable = [sniff_image(path) is not None for path in index.images]
    if not any(readable):
        raise DataError(f"none of the {len(index)} files in {index.root} is a readable image")
    dropped = [path for path, ok in zip(index.images, readable) if not ok]
    return index.take([i for i, ok in enumerate(readable) if ok]), dropped


def load_split(cfg: DataConfig, task: str) -> tuple[Split, list[str]]:
    """The split of the readable images: given by the dataset, or seeded. Bad files are left
    out of it afterwards (cvtrain.data.verify.checked_split), so fixing one reshuffles nothing."""
    index, dropped = load_index(cfg, task)
    split = split_index(
        index,
        val_samples=cfg.val_samples,
        val_fraction=cfg.val_fraction,
        seed=cfg.split_seed,
        limit=cfg.limit,
    )
    return split, dropped
