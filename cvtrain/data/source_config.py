"""Each data source's own settings, typed: the keys common to every source (schema.DataConfig)
and what each kind of source adds (a mask mapping, a folder layout, a box count, generated
samples). The source table (cvtrain.data.sources) names the class of each source; a key another
source reads is an unknown key here, with the nearest valid one suggested.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvtrain.config.schema import DataConfig, check, choice

MAX_MASK_VALUE = 255  # masks are read as 8-bit values (palette PNGs as their indices)
BOX_FORMATS = ("voc", "yolo", "coco")  # detection_folder's label files


def _at_least(value: int | None, minimum: int, key: str) -> None:
    if value is not None:
        check(value >= minimum, key, f"{value} must be >= {minimum}")


def _class_names(classes: list[str] | None) -> None:
    if classes is not None:
        check(
            len(classes) >= 2 and len(set(classes)) == len(classes),
            "data.classes",
            f"{list(classes)} needs at least two distinct names",
        )


@dataclass
class MaskData(DataConfig):
    """Segmentation masks (null = the source's own): class names in id order, the stored mask
    value of each class, and a stored value left out of the loss and every metric.
    mask_offset=k is short for mask_values=[k, k+1, ...]."""

    classes: list[str] | None = None
    mask_values: list[int] | None = None
    mask_offset: int | None = None
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _class_names(self.classes)
        stored = f"must be stored mask values 0..{MAX_MASK_VALUE} (8-bit PNG)"
        if self.mask_values is not None:
            values = list(self.mask_values)
            check(
                len(set(values)) == len(values) and all(0 <= v <= MAX_MASK_VALUE for v in values),
                "data.mask_values",
                f"{values} {stored}, each once",
            )
            check(
                self.mask_offset is None,
                "data.mask_offset",
                f"{self.mask_offset} and data.mask_values both map mask values; set one of them",
            )
            check(
                self.classes is None or len(self.classes) == len(values),
                "data.mask_values",
                f"{values} needs one value per class: data.classes has {len(self.classes or ())}",
            )
            check(
                self.ignore_index not in values,
                "data.ignore_index",
                f"{self.ignore_index} is also in data.mask_values={values}",
            )
        _at_least(self.mask_offset, 0, "data.mask_offset")
        if self.ignore_index is not None:
            check(
                0 <= self.ignore_index <= MAX_MASK_VALUE,
                "data.ignore_index",
                f"{self.ignore_index} {stored}",
            )


@dataclass
class MaskFolderData(MaskData):
    """<root>/<images_dir>/* paired by file stem with <root>/<masks_dir>/*.png; optional
    <root>/<splits_dir>/{train,val,test}.txt (one stem a line) give the split."""

    images_dir: str = "images"
    masks_dir: str = "masks"
    splits_dir: str = "splits"


@dataclass
class SyntheticPetsData(MaskData):
    num_samples: int | None = None  # null: the generator's default

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self.num_samples, 2, "data.num_samples")


@dataclass
class SyntheticShapesData(DataConfig):
    num_samples: int | None = None  # null: the generator's default
    num_classes: int | None = None  # how many shape classes (2-4); null: 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self.num_samples, 2, "data.num_samples")
        _at_least(self.num_classes, 2, "data.num_classes")


@dataclass
class BoxData(DataConfig):
    max_boxes: int = 50  # boxes per image the pipeline keeps (padded to this count)

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self.max_boxes, 1, "data.max_boxes")


@dataclass
class DetectionFolderData(BoxData):
    """How each format maps to cvtrain's boxes: cvtrain.data.detection_folder."""

    format: str = "voc"  # voc | yolo | coco
    classes: list[str] | None = None  # yolo: the names of its ids; voc: else every name seen

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.format, "data.format", BOX_FORMATS)
        _class_names(self.classes)


@dataclass
class SyntheticBoxesData(SyntheticShapesData, BoxData):
    """The generated shapes with their boxes."""
