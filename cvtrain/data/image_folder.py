"""Classification data laid out as one folder per class.

Two layouts are recognised:
    <root>/<class>/*.jpg                       split by seed (data.val_fraction / val_samples)
    <root>/{train,validation,test}/<class>/*   the book's cats_vs_dogs_small: used as given
Class names are the sorted folder names; labels are their positions in that order.
"""

from __future__ import annotations

from pathlib import Path

from cvtrain.config.schema import DataConfig
from cvtrain.data.index import FileIndex
from cvtrain.errors import DataError
from cvtrain.paths import dataset_root
from cvtrain.tasks.specs import CLASSIFICATION

EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}
SUBSETS = ("train", "validation", "test")


def image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder` (by extension, any case), sorted; dot-files skipped."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_split_layout(root: Path) -> bool:
    """train/ and validation/ folders (test/ optional) instead of class folders."""
    return (root / "train").is_dir() and (root / "validation").is_dir()


def index_folder(root: Path) -> FileIndex:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; set data.root to <root>/<class>/*")
    split = is_split_layout(root)
    subsets = [s for s in SUBSETS if (root / s).is_dir()] if split else [""]
    names = sorted({c.name for s in subsets for c in class_folders(root / s)})
    if len(names) < 2:
        layout = "<root>/{train,validation}/<class>/" if split else "<root>/<class>/"
        raise DataError(
            f"{root} needs at least two class folders ({layout}), found {names or 'none'}"
        )
    images: list[str] = []
    labels: list[int] = []
    tags: list[str] = []
    for subset in subsets:
        for label, name in enumerate(names):
            folder = root / subset / name
            files = image_files(folder) if folder.is_dir() else []
            images += [str(p) for p in files]
            labels += [label] * len(files)
            tags += [subset] * len(files)
    if not images:
        raise DataError(f"no image files ({', '.join(sorted(EXTENSIONS))}) in {root}")
    return FileIndex(
        task=CLASSIFICATION,
        images=tuple(images),
        targets=tuple(labels),
        class_names=tuple(names),
        root=str(root),
        subsets=tuple(tags) if split else (),
    )


def load_index(cfg: DataConfig) -> FileIndex:
    if cfg.root is None:
        raise DataError("data=image_folder needs data.root=<folder with one sub-folder per class>")
    return index_folder(dataset_root("image_folder", cfg.root))
