"""Data sources by name (`data.source`): each turns a DataConfig into a verified FileIndex."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cvtrain.config.schema import DataConfig, choice
from cvtrain.data.index import FileIndex, Split, sniff_image, split_index
from cvtrain.data.mask_folder import with_mapping
from cvtrain.data.source_config import (
    BoxData,
    DetectionFolderData,
    MaskData,
    MaskFolderData,
    SyntheticBoxesData,
    SyntheticPetsData,
    SyntheticShapesData,
)
from cvtrain.errors import ConfigError, DataError
from cvtrain.registry import resolve
from cvtrain.tasks.specs import CLASSIFICATION, DETECTION, SEGMENTATION


@dataclass(frozen=True)
class Source:
    task: str  # the task whose targets it holds, known before it downloads or generates
    loader: str  # "module:function", imported on use: one source's dependencies never slow another
    config: type[DataConfig] = DataConfig  # its typed settings


SOURCES: dict[str, Source] = {
    "oxford_pets": Source(SEGMENTATION, "cvtrain.data.oxford_pets:load_index", MaskData),
    "synthetic_pets": Source(
        SEGMENTATION, "cvtrain.data.synthetic_pets:load_index", SyntheticPetsData
    ),
    "mask_folder": Source(SEGMENTATION, "cvtrain.data.mask_folder:load_index", MaskFolderData),
    "voc": Source(SEGMENTATION, "cvtrain.data.voc:load_index", MaskFolderData),
    "image_folder": Source(CLASSIFICATION, "cvtrain.data.image_folder:load_index"),
    "cats_vs_dogs": Source(CLASSIFICATION, "cvtrain.data.cats_vs_dogs:load_index"),
    "oxford_pets_species": Source(CLASSIFICATION, "cvtrain.data.oxford_pets:load_species"),
    "oxford_pets_breeds": Source(CLASSIFICATION, "cvtrain.data.oxford_pets:load_breeds"),
    "synthetic_shapes": Source(
        CLASSIFICATION, "cvtrain.data.synthetic_shapes:load_index", SyntheticShapesData
    ),
    "oxford_pets_heads": Source(DETECTION, "cvtrain.data.oxford_pets:load_heads", BoxData),
    "detection_folder": Source(
        DETECTION, "cvtrain.data.detection_folder:load_index", DetectionFolderData
    ),
    "synthetic_boxes": Source(
        DETECTION, "cvtrain.data.synthetic_boxes:load_index", SyntheticBoxesData
    ),
}


def config_of_source(source: str) -> type[DataConfig]:
    """The settings class of `data.source` (config.checks types `data` with it)."""
    choice(source, "data.source", tuple(SOURCES))
    return SOURCES[source].config


def check_source(source: str, task: str) -> None:
    """Raise ConfigError unless `source` exists and serves `task` (config validation and every
    load call this, so a mismatch is reported before anything is read or downloaded)."""
    config_of_source(source)  # an unknown source is a one-line error
    source_task = SOURCES[source].task
    if source_task != task:
        choices = ", ".join(name for name, s in SOURCES.items() if s.task == task)
        raise ConfigError(
            f"data={source} is a {source_task} dataset but task={task}; use one of: {choices}"
        )


def _loader(source: str, task: str) -> Callable[[DataConfig], FileIndex]:
    check_source(source, task)
    return resolve(SOURCES[source].loader)


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
