"""The images mode=predict and mode=explain read: a file, a folder or a glob, decoded one by one.

Inputs that are not readable images are reported and skipped, never a crash.
"""

from __future__ import annotations

import glob
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.progress import track

from cvtrain.console import console
from cvtrain.data.index import sniff_image
from cvtrain.errors import DataError

log = logging.getLogger(__name__)

Skipped = list[tuple[Path, str]]  # (file, why)


def expand_inputs(pattern: str) -> list[Path]:
    """An image file, every file in a folder, or the files a glob matches (`**` recurses)."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    else:
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
    if not files:
        raise DataError(
            f"input={pattern} matches no files; give an image, a folder of images "
            "or a quoted glob such as input='photos/*.jpg'"
        )
    return sorted(files)


def check_unique_names(files: list[Path]) -> None:
    """Outputs are named after their image; two inputs must not write the same file."""
    clash = [stem for stem, n in Counter(f.stem for f in files).items() if n > 1]
    if clash:
        same = [str(f) for f in files if f.stem == clash[0]]
        raise DataError(
            f"input has {len(same)} files named {clash[0]}.* ({', '.join(same[:3])}), which "
            "would write the same output file; run them separately or narrow the glob"
        )


def readable_images(
    files: list[Path], skipped: Skipped, description: str
) -> Iterator[tuple[Path, np.ndarray]]:
    """Each input that decodes, as (path, HxWx3 uint8 at its own size), with a progress bar;
    the others are appended to `skipped` with the reason."""
    import tensorflow as tf

    from cvtrain.data.pipeline import read_image

    for path in track(
        files, description=description, console=console, disable=not console.is_terminal
    ):
        if sniff_image(path) is None:
            skipped.append((path, "not a readable image (unknown format or truncated)"))
            continue
        try:
            image = read_image(str(path)).numpy()
        except tf.errors.InvalidArgumentError:
            skipped.append((path, "cannot be decoded (truncated or corrupt)"))
            continue
        yield path, image


def log_skipped(skipped: Skipped) -> None:
    for path, why in skipped:
        log.warning("skipped %s: %s", path, why)
