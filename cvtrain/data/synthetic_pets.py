"""A generated stand-in for Oxford-IIIT Pet, written to disk in the same layout.

Each photo is a textured background with one "pet": a body and a head blob of random shape,
colour, fur texture, scale and position. Pet and background colours come from the same
distribution, so a model has to learn texture and shape, not a colour threshold. Trimaps use
the dataset's values: 1 pet, 2 background, 3 a border band around the pet.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from cvtrain.data import oxford_pets
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import SyntheticPetsData
from cvtrain.paths import dataset_root

GENERATOR_VERSION = 1
DEFAULT_SAMPLES = 600
SEED = 2024
SPECIES = ("Synthcat", "synthdog")  # capitalised = cat, as in the Oxford file names


def _blob(h: int, w: int, cy: float, cx: float, radius: float, rng: np.random.Generator):
    """Boolean mask of a star-shaped blob: a circle with random low-frequency harmonics."""
    yy, xx = np.mgrid[0:h, 0:w]
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(yy - cy, xx - cx)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, 0.18 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return dist < radius * r


def wave_texture(h: int, w: int, rng: np.random.Generator, freq: tuple[float, float]) -> np.ndarray:
    """Sum of random oriented waves in [-1, 1]: low freq for backgrounds, high for fur."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(3):
        f = rng.uniform(*freq)
        angle = rng.uniform(0, np.pi)
        out += np.sin(f * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    return out / 3


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(40, 215, size=3).astype(np.float32)


def make_sample(index: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """One (photo HxWx3, trimap HxW of 1/2/3) as uint8, deterministic in (index, seed)."""
    rng = np.random.default_rng([seed, index])
    h, w = (int(v) for v in rng.integers(128, 193, size=2))
    background = (
        random_colour(rng)[None, None, :] + 45 * wave_texture(h, w, rng, (0.02, 0.12))[..., None]
    )
    radius = rng.uniform(0.18, 0.3) * min(h, w)
    cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
    pet = _blob(h, w, cy, cx, radius, rng)
    angle = rng.uniform(0, 2 * np.pi)
    hy, hx = cy + 0.95 * radius * np.sin(angle), cx + 0.95 * radius * np.cos(angle)
    pet |= _blob(h, w, hy, hx, radius * rng.uniform(0.45, 0.65), rng)
    fur = random_colour(rng)[None, None, :] + 35 * wave_texture(h, w, rng, (0.5, 1.2))[..., None]
    photo = np.where(pet[..., None], fur, background)
    photo += rng.normal(0, 12, size=photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)

    mask = Image.fromarray(pet.astype(np.uint8) * 255)
    band = max(3, 2 * round(min(h, w) / 80) + 1)
    grown = np.asarray(mask.filter(ImageFilter.MaxFilter(band))) > 0
    shrunk = np.asarray(mask.filter(ImageFilter.MinFilter(band))) > 0
    trimap = np.full((h, w), 2, np.uint8)
    trimap[shrunk] = 1
    trimap[grown & ~shrunk] = 3
    return photo, trimap


def generate(root: Path, num_samples: int = DEFAULT_SAMPLES, seed: int = SEED) -> Path:
    """Write the dataset once; a finished one (same parameters) is reused as it is."""

    def write(tmp: Path) -> None:
        (tmp / "images").mkdir(parents=True)
        (tmp / "annotations" / "trimaps").mkdir(parents=True)
        for i in range(num_samples):
            photo, trimap = make_sample(i, seed)
            stem = f"{SPECIES[i % 2]}_{i // 2 + 1}"
            Image.fromarray(photo).save(tmp / "images" / f"{stem}.jpg", quality=90)
            Image.fromarray(trimap).save(tmp / "annotations" / "trimaps" / f"{stem}.png")

    params = {"version": GENERATOR_VERSION, "num_samples": num_samples, "seed": seed}
    return write_once(root, params, write)


def write_once(root: Path, params: dict, write: Callable[[Path], None]) -> Path:
    """Fill `root` with `write(folder)` unless it already holds a dataset made with `params`.

    Files are written to a temporary folder renamed at the end, so an interrupted run never
    leaves half a dataset behind.
    """
    stamp = root / "generator.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return root
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    (tmp / "generator.json").write_text(json.dumps(params))
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root


def load_index(cfg: SyntheticPetsData) -> FileIndex:
    root = dataset_root("synthetic_pets", cfg.root)
    return oxford_pets.index_root(generate(root, cfg.num_samples or DEFAULT_SAMPLES))
