"""A generated classification dataset in image_folder layout: <root>/<shape>/<shape>_<n>.jpg.

Each image holds one to three shapes of its class (circle, triangle, square, star; the first
`data.num_classes`) of random size, aspect, rotation and position, filled with a random textured
colour on a textured background, crossed by random strokes and noise. The class is in
the outline alone, so a model has to learn shape; it works offline and is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvtrain.data.image_folder import index_folder
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import SyntheticShapesData
from cvtrain.data.synthetic_pets import random_colour, wave_texture, write_once
from cvtrain.errors import ConfigError
from cvtrain.paths import dataset_root

GENERATOR_VERSION = 3
SHAPES = ("circle", "triangle", "square", "star")  # the first `num_classes` are used
DEFAULT_SAMPLES = 600
DEFAULT_CLASSES = 2
SEED = 2025


def outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-size polygon vertices (N x 2) of `shape`, centred on the origin."""
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.ones_like(angles)
    elif shape == "star":
        angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    else:
        corners = 4 if shape == "square" else 3
        angles = np.linspace(0, 2 * np.pi, corners, endpoint=False)
        angles += rng.uniform(-0.12, 0.12, size=corners)  # not perfectly regular
        radii = np.ones_like(angles)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    points *= [1.0, rng.uniform(0.75, 1.25)]  # aspect ratio
    turn = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return points @ rotation.T


def make_sample(index: int, num_classes: int, seed: int = SEED) -> tuple[np.ndarray, int]:
    """One (HxWx3 uint8 image, label), deterministic in (index, num_classes, seed)."""
    rng = np.random.default_rng([seed, index])
    label = index % num_classes
    h, w = (int(v) for v in rng.integers(64, 113, size=2))
    paper = random_colour(rng)
    background = paper[None, None, :] + 25 * wave_texture(h, w, rng, (0.03, 0.2))[..., None]
    mask = Image.new("L", (w, h), 0)
    for _ in range(int(rng.integers(1, 4))):  # a few shapes of the class, possibly overlapping
        radius = rng.uniform(0.2, 0.32) * min(h, w)
        centre = rng.uniform([radius, radius], [w - radius, h - radius])
        polygon = outline(SHAPES[label], rng) * radius + centre
        ImageDraw.Draw(mask).polygon([tuple(p) for p in polygon], fill=255)
    inside = np.asarray(mask)[..., None] > 0
    ink = random_colour(rng)
    while np.abs(ink - paper).max() < 70:  # the outlines must be visible
        ink = random_colour(rng)
    fill = ink[None, None, :] + 15 * wave_texture(h, w, rng, (0.3, 1.0))[..., None]
    image = Image.fromarray(np.clip(np.where(inside, fill, background), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 2))):  # strokes that cross shape and background alike
        ends = rng.uniform([0, 0, 0, 0], [w, h, w, h])
        draw.line(
            list(ends),
            fill=tuple(int(c) for c in random_colour(rng)),
            width=int(rng.integers(1, 4)),
        )
    pixels = np.asarray(image, np.float32) + rng.normal(0, 6, size=(h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), label


def generate(
    root: Path,
    num_samples: int = DEFAULT_SAMPLES,
    num_classes: int = DEFAULT_CLASSES,
    seed: int = SEED,
) -> Path:
    """Write the dataset once; a finished one (same parameters) is reused as it is."""

    def write(tmp: Path) -> None:
        for name in SHAPES[:num_classes]:
            (tmp / name).mkdir()
        for i in range(num_samples):
            image, label = make_sample(i, num_classes, seed)
            name = SHAPES[label]
            Image.fromarray(image).save(
                tmp / name / f"{name}_{i // num_classes + 1}.jpg", quality=90
            )

    params = {
        "version": GENERATOR_VERSION,
        "num_samples": num_samples,
        "num_classes": num_classes,
        "seed": seed,
    }
    return write_once(root, params, write)


def load_index(cfg: SyntheticShapesData) -> FileIndex:
    num_classes = cfg.num_classes or DEFAULT_CLASSES
    if not 2 <= num_classes <= len(SHAPES):
        raise ConfigError(
            f"data.num_classes={num_classes}: synthetic_shapes has 2 to {len(SHAPES)} classes"
        )
    root = dataset_root("synthetic_shapes", cfg.root)
    return index_folder(generate(root, cfg.num_samples or DEFAULT_SAMPLES, num_classes))
