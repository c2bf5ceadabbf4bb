"""Pascal VOC 2012 segmentation: a mask folder (configs/data/voc.yaml holds its layout, classes
and ignore value) that cvtrain does not download.

The official archive has no published sha256 to check a download against, so a missing root is
an error that says where to get the archive and where to unpack it.
"""

from __future__ import annotations

from cvtrain.data import mask_folder
from cvtrain.data.index import FileIndex
from cvtrain.data.source_config import MaskFolderData
from cvtrain.errors import DataError
from cvtrain.paths import dataset_root

ARCHIVE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"


def load_index(cfg: MaskFolderData) -> FileIndex:
    root = dataset_root(cfg.source, cfg.root)
    if not (root / cfg.images_dir).is_dir() or not (root / cfg.masks_dir).is_dir():
        raise DataError(
            f"no Pascal VOC 2012 in {root} ({cfg.images_dir}/ and {cfg.masks_dir}/); cvtrain "
            f"does not download it: fetch {ARCHIVE} (2.0 GB), unpack it and set "
            "data.root=<where you unpacked it>/VOCdevkit/VOC2012"
        )
    return mask_folder.index_configured(root, cfg)
