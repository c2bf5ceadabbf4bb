"""A generated detection dataset in detection_folder's YOLO layout: <root>/images/<n>.jpg and
<root>/labels/<n>.txt, the classes being the first `data.num_classes` shapes of
synthetic_shapes (circle, triangle, square, star).

Each image holds one to three shapes of random class, size, aspect, rotation and position on a
textured background, and the boxes that tightly enclose them. It works offline and is
deterministic: `make demo-detection` and the tests train on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvtrain.data import detection_folder
from cvtrain.data.box_labels import read_yolo
from cvtrain.data.image_folder import image_files
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import SyntheticBoxesData
from cvtrain.data.synthetic_pets import random_colour, wave_texture, write_once
from cvtrain.data.synthetic_shapes import SHAPES, outline
from cvtrain.errors import ConfigError
from cvtrain.paths import dataset_root

GENERATOR_VERSION = 2
DEFAULT_SAMPLES = 300
DEFAULT_CLASSES = 2
SEED = 2026


def make_sample(index: int, num_classes: int, seed: int = SEED) -> tuple[np.ndarray, list[str]]:
    """One (HxWx3 uint8 image, its YOLO label lines), deterministic in (index, classes, seed)."""
    rng = np.random.default_rng([seed, index])
    h, w = (int(v) for v in rng.integers(96, 129, size=2))
    paper = random_colour(rng)
    pixels = paper[None, None, :] + 25 * wave_texture(h, w, rng, (0.03, 0.2))[..., None]
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(num_classes))
        radius = rng.uniform(0.15, 0.3) * min(h, w)
        centre = rng.uniform([radius, radius], [w - radius, h - radius])
        polygon = outline(SHAPES[cls], rng) * radius + centre
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in polygon], fill=255)
        inside = np.asarray(mask) > 0
        if not inside.any():
            continue
        ink = random_colour(rng)
        while np.abs(ink - paper).max() < 70:  # the outlines must be visible
            ink = random_colour(rng)
        pixels = np.where(inside[..., None], ink[None, None, :], pixels)
        ys, xs = np.nonzero(inside)  # the box of the pixels drawn, on pixel edges
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    pixels = pixels + rng.normal(0, 6, size=(h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), lines


def generate(
    root: Path, num_samples: int = DEFAULT_SAMPLES, num_classes: int = DEFAULT_CLASSES
) -> Path:
    """Write the dataset once; a finished one (same parameters) is reused as it is."""

    def write(tmp: Path) -> None:
        for folder in ("images", detection_folder.LABELS_DIR):
            (tmp / folder).mkdir()
        for i in range(num_samples):
            image, lines = make_sample(i, num_classes)
            Image.fromarray(image).save(tmp / "images" / f"{i:05d}.jpg", quality=92)
            text = "".join(f"{line}\n" for line in lines)
            (tmp / detection_folder.LABELS_DIR / f"{i:05d}.txt").write_text(text)

    params = {
        "version": GENERATOR_VERSION,
        "num_samples": num_samples,
        "num_classes": num_classes,
        "seed": SEED,
    }
    return write_once(root, params, write)


def load_index(cfg: SyntheticBoxesData) -> FileIndex:
    num_classes = cfg.num_classes or DEFAULT_CLASSES
    if num_classes > len(SHAPES):
        raise ConfigError(
            f"data.num_classes={num_classes}: synthetic_boxes has 2 to {len(SHAPES)} classes"
        )
    root = generate(
        dataset_root("synthetic_boxes", cfg.root), cfg.num_samples or DEFAULT_SAMPLES, num_classes
    )
    classes = SHAPES[:num_classes]
    labels = root / detection_folder.LABELS_DIR
    return detection_folder.detection_index(
        root,
        image_files(root / "images"),
        lambda i: read_yolo(labels / f"{i.stem}.txt", classes),
        classes,
    )
