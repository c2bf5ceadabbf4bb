"""Segmentation data as two folders paired by file stem: the general source, and the layout
behind Oxford-IIIT Pet and Pascal VOC.

    <root>/images/*        jpg, jpeg, png, bmp, gif (any mix)
    <root>/masks/*.png     one per image, same stem; palette PNGs are read as their indices
    <root>/splits/{train,val,test}.txt   optional: one stem a line; else a seeded split

The folder names are `data.images_dir`, `data.masks_dir` and `data.splits_dir`. The stored mask
values map to classes through `data.mask_values` (one per class of `data.classes`), and
`data.ignore_index` names a value that is no class.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from cvtrain.data.image_folder import image_files
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import MAX_MASK_VALUE, MaskData, MaskFolderData
from cvtrain.errors import ConfigError, DataError
from cvtrain.paths import dataset_root
from cvtrain.tasks.specs import SEGMENTATION

# splits/<file>.txt -> the FileIndex subset it lists
SPLIT_FILES = {"train": "train", "val": "validation", "test": "test"}


def mask_of(image: Path, masks: Path) -> Path:
    return masks / f"{image.stem}.png"


def unpaired(images: Path, masks: Path) -> list[Path]:
    """The images in `images` without a mask (left out of the index; the data scan lists them)."""
    return [image for image in image_files(images) if not mask_of(image, masks).is_file()]


def pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """Every image in `images` with a `<stem>.png` in `masks`, sorted by image name."""
    if not images.is_dir():
        return []
    found = [(image, mask_of(image, masks)) for image in image_files(images)]
    twins = sorted(stem for stem, n in Counter(i.stem for i, _ in found).items() if n > 1)
    if twins:
        raise DataError(
            f"{images} has several images named {twins[0]} (different extensions); "
            "keep one per mask"
        )
    return [(image, mask) for image, mask in found if mask.is_file()]


def read_splits(folder: Path) -> dict[str, str]:
    """stem -> subset from `<folder>/{train,val,test}.txt`; empty when there are none."""
    subsets: dict[str, str] = {}
    for name, subset in SPLIT_FILES.items():
        path = folder / f"{name}.txt"
        if not path.is_file():
            continue
        for stem in path.read_text().split():
            if subsets.setdefault(stem, subset) != subset:
                raise DataError(f"{stem} is listed in two split files of {folder}; keep one")
    return subsets


def index_folders(
    root: Path,
    images_dir: str,
    masks_dir: str,
    classes: tuple[str, ...],
    mask_values: tuple[int, ...] = (),
    splits_dir: str | None = None,
) -> FileIndex:
    """The image/mask pairs under `root`; with split files, the samples they list, tagged."""
    found = pairs(root / images_dir, root / masks_dir)
    if not found:
        raise DataError(
            f"no {images_dir}/* image with a matching {masks_dir}/<same name>.png in {root}"
        )
    subsets = read_splits(root / splits_dir) if splits_dir else {}
    if subsets:
        by_stem = {image.stem: (image, mask) for image, mask in found}
        missing = sorted(set(subsets) - set(by_stem))
        if missing:
            raise DataError(
                f"{root / splits_dir} lists {len(missing)} names without both an image and a "
                f"mask (e.g. {missing[0]}); fix the lists or add the files"
            )
        found = [by_stem[stem] for stem in sorted(subsets)]
    return FileIndex(
        task=SEGMENTATION,
        images=tuple(str(image) for image, _ in found),
        targets=tuple(str(mask) for _, mask in found),
        class_names=classes,
        root=str(root),
        mask_values=mask_values,
        subsets=tuple(subsets[Path(image).stem] for image, _ in found) if subsets else (),
    )


def load_index(cfg: MaskFolderData) -> FileIndex:
    if cfg.root is None:
        raise DataError(f"data={cfg.source} needs data.root=<folder with {cfg.images_dir}/>")
    return index_configured(dataset_root(cfg.source, cfg.root), cfg)


def index_configured(root: Path, cfg: MaskFolderData) -> FileIndex:
    """The mask folder at `root` laid out and named as the data.* keys say."""
    if cfg.classes is None:
        raise ConfigError(
            f"data={cfg.source} needs data.classes=[<name of class 0>, <class 1>, ...]"
        )
    classes = tuple(cfg.classes)
    return index_folders(root, cfg.images_dir, cfg.masks_dir, classes, (), cfg.splits_dir)


def with_mapping(index: FileIndex, cfg: MaskData) -> FileIndex:
    """`index` with the mask mapping the config sets (data.classes, data.mask_values or
    data.mask_offset, data.ignore_index) in place of the source's own."""
    classes = tuple(cfg.classes) if cfg.classes is not None else index.class_names
    if cfg.mask_values is not None:
        values = tuple(cfg.mask_values)
    elif cfg.mask_offset is not None:
        values = tuple(range(cfg.mask_offset, cfg.mask_offset + len(classes)))
    elif len(classes) == index.num_classes:
        values = index.mask_values
    else:
        values = ()
    if values and len(values) != len(classes):
        raise ConfigError(
            f"data.mask_values={list(values)} needs one value per class: "
            f"{len(classes)} classes ({', '.join(classes)})"
        )
    if values and max(values) > MAX_MASK_VALUE:
        raise ConfigError(
            f"data.mask_offset={cfg.mask_offset} maps classes to values above {MAX_MASK_VALUE}"
        )
    ignore = cfg.ignore_index if cfg.ignore_index is not None else index.ignore_value
    if ignore is not None and ignore in (values or range(len(classes))):
        raise ConfigError(f"data.ignore_index={ignore} is also the mask value of a class")
    return replace(index, class_names=classes, mask_values=values, ignore_value=ignore)
