"""Oxford-IIIT Pet in its official layout: images/*.jpg, annotations/trimaps/*.png and
annotations/xmls/*.xml.

Segmentation reads the trimaps, as a mask folder (cvtrain.data.mask_folder) with its own
folder names and mask values; classification reads the label from the file name
(`<Breed>_<n>.jpg`, capitalised breeds are cats): species (cat vs dog) or the 37 breeds;
detection reads the head boxes of the images that have an XML (the trainval ones), one box
named cat or dog per image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cvtrain.config.schema import DataConfig
from cvtrain.data import mask_folder
from cvtrain.data.box_labels import read_voc
from cvtrain.data.detection_folder import detection_index
from cvtrain.data.download import Remote, download_all, download_missing
from cvtrain.data.index import FileIndex
from cvtrain.errors import DataError
from cvtrain.paths import dataset_root
from cvtrain.tasks.specs import CLASSIFICATION

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
TRIMAP_VALUES = (1, 2, 3)
TRIMAPS = "annotations/trimaps"
HEADS = "annotations/xmls"
SPECIES = ("cat", "dog")


def has_layout(root: Path, labels: str = TRIMAPS) -> bool:
    return (root / "images").is_dir() and (root / labels).is_dir()


def pet_images(root: Path) -> list[Path]:
    """Every images/*.jpg sorted by name; dot-files skipped (the folder also holds .mat files)."""
    return [p for p in sorted((root / "images").glob("*.jpg")) if not p.name.startswith(".")]


def image_mask_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every pet image with a trimap of the same stem."""
    return mask_folder.pairs(root / "images", root / TRIMAPS)


def breed(image: Path) -> str:
    """`Egyptian_Mau_14.jpg` -> `Egyptian_Mau`."""
    return image.stem.rsplit("_", 1)[0]


def species(image: Path) -> str:
    return SPECIES[0] if breed(image)[:1].isupper() else SPECIES[1]


def download(root: Path, archives: tuple[Remote, ...] = ARCHIVES) -> None:
    """Fetch, verify and unpack the official archives into `root`."""
    download_all(root, archives)


def locate(cfg: DataConfig, labels: str = TRIMAPS, offline: str = "data=synthetic_pets") -> Path:
    """The dataset root, downloaded first when missing (unless data.download=false)."""
    root = dataset_root("oxford_pets", cfg.root)
    if not has_layout(root, labels):
        download_missing(
            root,
            ARCHIVES,
            allowed=cfg.download,
            what=f"Oxford-IIIT Pet (images/ and {labels}/)",
            offline=offline,
        )
    if not has_layout(root, labels):
        raise DataError(
            f"the Oxford-IIIT Pet archives unpacked into {root} lack images/ or "
            f"{labels}/; delete the folder and run again"
        )
    return root


def load_index(cfg: DataConfig) -> FileIndex:
    return index_root(locate(cfg))


def load_species(cfg: DataConfig) -> FileIndex:
    return index_labels(locate(cfg), species, SPECIES)


def load_breeds(cfg: DataConfig) -> FileIndex:
    return index_labels(locate(cfg), breed)


def load_heads(cfg: DataConfig) -> FileIndex:
    root = locate(cfg, HEADS, offline="data=synthetic_boxes")
    xmls = root / HEADS
    images = [image for image in pet_images(root) if (xmls / f"{image.stem}.xml").is_file()]
    return detection_index(
        root, images, lambda i: read_voc(xmls / f"{i.stem}.xml", i, SPECIES), SPECIES
    )


def index_labels(
    root: Path, label_of: Callable[[Path], str], names: tuple[str, ...] | None = None
) -> FileIndex:
    """Classification of the pet images by `label_of`; class names sorted unless given."""
    images = pet_images(root)
    if not images:
        raise DataError(f"no images/*.jpg in {root}")
    labels = [label_of(image) for image in images]
    names = names or tuple(sorted(set(labels)))
    return FileIndex(
        task=CLASSIFICATION,
        images=tuple(str(i) for i in images),
        targets=tuple(names.index(label) for label in labels),
        class_names=names,
        root=str(root),
    )


def index_root(root: Path) -> FileIndex:
    return mask_folder.index_folders(root, "images", TRIMAPS, TRIMAP_CLASSES, TRIMAP_VALUES)
