"""Oxford-IIIT Pet in its official layout: images/*.jpg and annotations/trimaps/*.png."""

from __future__ import annotations

from pathlib import Path

from cvtrain.config import DataConfig
from cvtrain.data.download import Remote, extract, fetch
from cvtrain.data.index import SEGMENTATION, FileIndex
from cvtrain.errors import DataError
from cvtrain.paths import dataset_root

# Both archives are plain tar despite the .gz name; tarfile detects that by itself.
ARCHIVES = (
    Remote(
        "https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz",
        "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d",
        791_918_971,
    ),
    Remote(
        "https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz",
        "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91",
        19_173_078,
    ),
)
# Trimap pixel values 1 (pet), 2 (background), 3 (border) become classes 0, 1, 2.
TRIMAP_CLASSES = ("pet", "background", "border")
TRIMAP_OFFSET = 1


def has_layout(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir()


def image_mask_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every images/*.jpg with a trimap of the same stem, sorted by name; dot-files skipped."""
    trimaps = root / "annotations" / "trimaps"
    pairs = []
    for image in sorted((root / "images").glob("*.jpg")):
        mask = trimaps / f"{image.stem}.png"
        if not image.name.startswith(".") and mask.is_file():
            pairs.append((image, mask))
    return pairs


def download(root: Path, archives: tuple[Remote, ...] = ARCHIVES) -> None:
    """Fetch, verify and unpack the official archives into `root`."""
    downloads = root / ".downloads"
    for remote in archives:
        extract(fetch(remote, downloads), root)


def load_index(cfg: DataConfig) -> FileIndex:
    root = dataset_root("oxford_pets", cfg.root)
    if not has_layout(root) and cfg.download:
        download(root)
    if not has_layout(root):
        raise DataError(
            f"Oxford-IIIT Pet not found in {root} (needs images/ and annotations/trimaps/): "
            "add data.download=true to fetch it (800 MB), point data.root at a copy, "
            "or train offline with data=synthetic_pets"
        )
    return index_root(root)


def index_root(root: Path) -> FileIndex:
    pairs = image_mask_pairs(root)
    if not pairs:
        raise DataError(f"no images/*.jpg with a matching annotations/trimaps/*.png in {root}")
    return FileIndex(
        task=SEGMENTATION,
        images=tuple(str(i) for i, _ in pairs),
        targets=tuple(str(m) for _, m in pairs),
        class_names=TRIMAP_CLASSES,
        root=str(root),
        mask_offset=TRIMAP_OFFSET,
    )
