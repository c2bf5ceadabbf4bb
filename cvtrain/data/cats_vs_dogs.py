"""Kaggle/Microsoft cats vs dogs (25,000 JPEGs): an image folder, <root>/PetImages/{Cat,Dog}/.

About 1,590 of the files lack a JFIF header and are corrupt; like the Keras example, they are
dropped (counted and reported, never deleted).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cvtrain.config.schema import DataConfig
from cvtrain.data.download import Remote, download_all, download_missing
from cvtrain.data.image_folder import index_folder
from cvtrain.data.index import FileIndex
from cvtrain.errors import DataError
from cvtrain.paths import dataset_root

log = logging.getLogger(__name__)

# Microsoft publishes no checksum; the size is checked and zip members are CRC-checked.
ARCHIVE = Remote(
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip",
    None,
    824_887_076,
)
FOLDER = "PetImages"


def download(root: Path, archive: Remote = ARCHIVE) -> None:
    """Fetch, verify and unpack the archive into `root` (giving root/PetImages)."""
    download_all(root, (archive,))


def has_jfif_header(path: str) -> bool:
    """The Keras example's test: b"JFIF" within the first 10 bytes."""
    with open(path, "rb") as f:
        return b"JFIF" in f.read(10)


def load_index(cfg: DataConfig) -> FileIndex:
    root = dataset_root("cats_vs_dogs", cfg.root)
    if not (root / FOLDER).is_dir():
        download_missing(
            root,
            (ARCHIVE,),
            allowed=cfg.download,
            what=f"cats vs dogs ({FOLDER}/Cat and {FOLDER}/Dog)",
            offline="data=synthetic_shapes",
        )
    if not (root / FOLDER).is_dir():
        raise DataError(
            f"the cats vs dogs archive unpacked into {root} lacks {FOLDER}/; "
            "delete the folder and run again"
        )
    index = index_folder(root / FOLDER)
    keep = [i for i, path in enumerate(index.images) if has_jfif_header(path)]
    if len(keep) < len(index):
        log.warning(
            "dropped %d of %d files without a JFIF header (corrupt, as in the Keras example)",
            len(index) - len(keep),
            len(index),
        )
    if not keep:
        raise DataError(f"none of the {len(index)} files in {root / FOLDER} has a JFIF header")
    return index.take(keep)
