"""Detection data in a folder: `<root>/images/*` and their boxes in one of three formats
(`data.format`), how each maps to cvtrain's boxes is in cvtrain.data.box_labels:
    voc   <root>/labels/<stem>.xml   Pascal VOC XML; classes: data.classes, else every name seen
    yolo  <root>/labels/<stem>.txt   `class cx cy w h` normalised; names from data.classes; an
                                     image without a label file has no objects
    coco  <root>/annotations.json    COCO instances; names from its categories
The split is seeded (data.val_fraction / data.val_samples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cvtrain.data.box_labels import (
    ImageLabels,
    image_size,
    read_coco,
    read_voc,
    read_yolo,
    voc_names,
)
from cvtrain.data.image_folder import image_files
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import DetectionFolderData
from cvtrain.errors import ConfigError, DataError
from cvtrain.paths import dataset_root
from cvtrain.tasks.specs import DETECTION

LABELS_DIR, COCO_FILE = "labels", "annotations.json"


def detection_index(
    root: Path,
    images: Iterable[Path],
    read: Callable[[Path], ImageLabels],
    classes: Sequence[str],
) -> FileIndex:
    """The images whose labels are usable, their boxes, and every label problem found."""
    kept, targets, problems = [], [], []
    for image in images:
        label = read(image)
        problems += label.problems
        if label.usable:
            kept.append(str(image))
            targets.append(tuple(label.boxes))
    if not kept:
        raise DataError(f"no image in {root} has usable box labels (first problem: {problems[:1]})")
    return FileIndex(
        task=DETECTION,
        images=tuple(kept),
        targets=tuple(targets),
        class_names=tuple(classes),
        root=str(root),
        label_problems=tuple(problems),
    )


def voc_classes(xmls: Iterable[Path], given: Sequence[str] | None) -> tuple[str, ...]:
    """data.classes, else every object name in the XMLs, sorted."""
    if given:
        return tuple(given)
    names = sorted({name for xml in xmls for name in voc_names(xml) if name})
    if not names:
        raise DataError("no object names in the VOC XMLs; list the classes in data.classes")
    return tuple(names)


def load_index(cfg: DetectionFolderData) -> FileIndex:
    root = dataset_root(cfg.source, cfg.root)
    if not (root / "images").is_dir():
        raise DataError(f"data.root={root} has no images/ folder (see `cvtrain --help` data)")
    images = image_files(root / "images")
    labels = root / LABELS_DIR
    if cfg.format == "voc":
        xml = {image: labels / f"{image.stem}.xml" for image in images}
        classes = voc_classes((p for p in xml.values() if p.is_file()), cfg.classes)
        with_xml = [image for image in images if xml[image].is_file()]
        return detection_index(root, with_xml, lambda i: read_voc(xml[i], i, classes), classes)
    if cfg.format == "yolo":
        if not cfg.classes:
            raise ConfigError("data.format=yolo needs the class names: data.classes=[cat,dog]")
        classes = tuple(cfg.classes)
        return detection_index(
            root, images, lambda i: read_yolo(labels / f"{i.stem}.txt", classes), classes
        )
    return coco_index(root, images)


def coco_index(root: Path, images: list[Path]) -> FileIndex:
    try:
        coco = read_coco(root / COCO_FILE)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    where = str(root / COCO_FILE)

    def read(image: Path) -> ImageLabels:
        actual = image_size(image)
        stated = coco.sizes[image.name]
        if actual is not None and actual != stated:
            detail = f"{image.name}: size {stated[0]}x{stated[1]}, image {actual[0]}x{actual[1]}"
            return ImageLabels(problems=[(where, "label size", detail)], usable=False)
        return coco.labels[image.name]

    listed = [image for image in images if image.name in coco.labels]
    return detection_index(root, listed, read, coco.classes)
