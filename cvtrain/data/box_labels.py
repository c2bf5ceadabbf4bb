"""Box labels (Pascal VOC XML, YOLO txt, COCO json) read into cvtrain's boxes, in pure Python.

Inside cvtrain a box is (class id, x0, y0, x1, y1): its corners as fractions of its image's width
and height, on pixel edges (0 is the left edge of the first pixel, 1 the right edge of the last).
Resizing an image (cvtrain resizes without keeping the aspect ratio) leaves such a box unchanged,
and a prediction maps back to any input's own pixels by multiplying by its width and height.
- VOC: `xmin..xmax` are 1-based indices of the first and last pixel inside the box, so
  x0 = (xmin - 1) / width and x1 = xmax / width (likewise y with the height).
- YOLO: `class cx cy w h` are fractions already: x0 = cx - w / 2, x1 = cx + w / 2.
- COCO: `bbox = [x, y, w, h]` in pixels from the image's top-left corner: x0 = x / width,
  x1 = (x + w) / width.
A bad label is a problem, never an exception: the bad box is left out of its image's targets, or
the image out of the index when its label file is unusable (cvtrain.data.index.FileIndex).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

Box = tuple[int, float, float, float, float]
Problem = tuple[str, str, str]  # (label file, kind, detail), as the data scan lists them

EDGE_TOLERANCE = 0.01  # a corner this far outside its image (a fraction) is clipped, not bad
DIGITS = 6  # stored precision of a corner: the same labels give the same fingerprint


@dataclass
class ImageLabels:
    """One image's readable boxes and the problems of its label file; `usable` is False when
    the whole image must be left out (an unreadable label file, a size that disagrees)."""

    boxes: list[Box] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    usable: bool = True


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image's header, or None if it cannot be read (the data scan
    reports such a file as a bad image)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 (PIL raises many types for bad data)
        return None


def checked_box(
    label: ImageLabels, where: str, cls: int, corners: Sequence[float], what: str
) -> None:
    """Add the box (x0, y0, x1, y1 as fractions) to `label`, or the problem that bars it."""
    x0, y0, x1, y1 = corners
    low, high = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
    if not all(low <= v <= high for v in corners):
        label.problems.append((where, "box outside image", what))
        return
    x0, y0, x1, y1 = (round(min(1.0, max(0.0, v)), DIGITS) for v in (x0, y0, x1, y1))
    if x1 <= x0 or y1 <= y0:
        label.problems.append((where, "empty box", what))
        return
    label.boxes.append((cls, x0, y0, x1, y1))


def unknown_class(label: ImageLabels, where: str, name: str, classes: Sequence[str]) -> None:
    label.problems.append((where, "unknown class", f"{name} not in {', '.join(classes)}"))


def unreadable(where: str, exc: Exception | str) -> ImageLabels:
    detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return ImageLabels(problems=[(where, "unreadable label", detail)], usable=False)


def voc_names(path: Path) -> list[str]:
    """The object names of a VOC XML ([] if it cannot be read: read_voc reports that)."""
    try:
        return [obj.findtext("name", "").strip() for obj in ET.parse(path).iter("object")]
    except (OSError, ET.ParseError):
        return []


def read_voc(path: Path, image: Path, classes: Sequence[str]) -> ImageLabels:
    """A Pascal VOC XML's boxes; its `<size>` must be the image's own."""
    where = str(path)
    try:
        root = ET.parse(path).getroot()
        width = int(float(root.findtext("size/width", "0")))
        height = int(float(root.findtext("size/height", "0")))
        objects = [
            (
                obj.findtext("name", "").strip(),
                [
                    float(obj.findtext(f"bndbox/{k}", "nan"))
                    for k in ("xmin", "ymin", "xmax", "ymax")
                ],
            )
            for obj in root.iter("object")
        ]
    except (OSError, ET.ParseError, ValueError) as exc:
        return unreadable(where, exc)
    actual = image_size(image)
    if actual is not None and (width, height) != actual:
        detail = f"size {width}x{height}, image {actual[0]}x{actual[1]}"
        return ImageLabels(problems=[(where, "label size", detail)], usable=False)
    label = ImageLabels()
    for name, (xmin, ymin, xmax, ymax) in objects:
        if name not in classes:
            unknown_class(label, where, name, classes)
            continue
        corners = ((xmin - 1) / width, (ymin - 1) / height, xmax / width, ymax / height)
        what = f"{name} [{xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}] in {width}x{height}"
        checked_box(label, where, classes.index(name), corners, what)
    return label


def read_yolo(path: Path, classes: Sequence[str]) -> ImageLabels:
    """A YOLO txt's boxes (`class cx cy w h` a line); no file is an image without objects."""
    if not path.is_file():
        return ImageLabels()
    where = str(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        rows = [(int(parts[0]), [float(v) for v in parts[1:5]], len(parts)) for parts in lines]
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        return unreadable(where, exc)
    label = ImageLabels()
    for cls, (cx, cy, w, h), count in rows:
        if count != 5:
            return unreadable(where, f"a line has {count} values, not 5 (class cx cy w h)")
        if not 0 <= cls < len(classes):
            unknown_class(label, where, f"class id {cls}", [f"0..{len(classes) - 1}"])
            continue
        corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        checked_box(label, where, cls, corners, f"{cls} {cx:g} {cy:g} {w:g} {h:g}")
    return label


@dataclass
class CocoFile:
    """A COCO instances file: class names (categories by id) and each image's labels."""

    classes: tuple[str, ...]
    labels: dict[str, ImageLabels]  # image file name -> its labels
    sizes: dict[str, tuple[int, int]]  # image file name -> (width, height) the file states


def read_coco(path: Path) -> CocoFile:
    """Raises ValueError (with what is wrong) if the file is not a COCO instances file."""
    try:
        data = json.loads(path.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = {im["id"]: im for im in data["images"]}
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a COCO instances file ({exc})") from None
    classes = tuple(c["name"] for c in categories)
    position = {c["id"]: i for i, c in enumerate(categories)}
    labels = {im["file_name"]: ImageLabels() for im in images.values()}
    sizes = {im["file_name"]: (int(im["width"]), int(im["height"])) for im in images.values()}
    for ann in annotations:
        image = images.get(ann.get("image_id"))
        if image is None or ann.get("iscrowd", 0):  # crowd regions are not objects to find
            continue
        label, where = labels[image["file_name"]], f"{path}#annotation {ann.get('id')}"
        if ann.get("category_id") not in position:
            unknown_class(label, where, f"category_id {ann.get('category_id')}", classes)
            continue
        width, height = sizes[image["file_name"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        corners = (x / width, y / height, (x + w) / width, (y + h) / height)
        what = f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] in {width}x{height}"
        checked_box(label, where, position[ann["category_id"]], corners, what)
    return CocoFile(classes, labels, sizes)
