"""Data verification: find the files that would fail or mislead training, before it starts.

Every image (and mask) is opened and fully decoded in parallel: empty, non-image, truncated and
unreadable files, images without a mask, masks of another size and masks with values outside
the classes are reported in a table and in `bad_files.txt`, then skipped (`data.on_bad=skip`)
or refused (`data.on_bad=error`). Each scan's result is cached by the dataset's fingerprint
(file list, sizes, mtimes), so the next run does not rescan. If most masks are out of range, the
label mapping is wrong rather than the files: that is an error naming the mapping that fits.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cvtrain import rundir
from cvtrain.console import console
from cvtrain.data.index import FileIndex, sniff_image
from cvtrain.errors import DataError
from cvtrain.paths import data_cache_dir

CHECKS_VERSION = 1


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # the table's row: "empty file", "not an image", "unreadable image", ...
    detail: str = ""


@dataclass
class Report:
    index: FileIndex  # the samples without problems
    problems: list[Problem]
    scanned: int
    cached: bool


def _open_image(path: str) -> tuple[Image.Image | None, Problem | None]:
    """The fully decoded image, or what is wrong with the file."""
    try:
        if os.path.getsize(path) == 0:
            return None, Problem(path, "empty file")
    except OSError as exc:
        return None, Problem(path, "unreadable image", exc.strerror or str(exc))
    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: truncated files fail here
            image = im.copy()
    except UnidentifiedImageError:
        return None, Problem(path, "not an image", "not JPEG/PNG/GIF/BMP data")
    except Exception as exc:  # noqa: BLE001 (PIL raises many types for bad data)
        return None, Problem(path, "unreadable image", str(exc).splitlines()[0][:120])
    if sniff_image(path) is None:  # a format or an ending the training pipeline rejects
        return None, Problem(path, "unreadable image", f"{image.format} not usable for training")
    return image, None


def _check_sample(image: str, target, mask: bool) -> tuple[list[Problem], list[int] | None]:
    """Problems of one sample, and the distinct raw values of its target if that is a mask."""
    photo, problem = _open_image(image)
    problems = [problem] if problem else []
    if not mask:
        return problems, None
    mask, problem = _open_image(str(target))
    if problem:
        return [*problems, Problem(str(target), f"mask: {problem.kind}", problem.detail)], None
    if photo is not None and photo.size != mask.size:
        w, h = photo.size
        problems.append(
            Problem(str(target), "mask size", f"{mask.size[0]}x{mask.size[1]}, image {w}x{h}")
        )
    return problems, np.unique(mask_values(mask)).tolist()


def mask_values(mask: Image.Image) -> np.ndarray:
    """A mask's raw values as the pipeline's decode_png(channels=1) sees them."""
    if mask.mode not in ("L", "I", "I;16"):
        mask = mask.convert("L")
    return np.asarray(mask)


def fingerprint(index: FileIndex, dropped: list[str]) -> str:
    """A key for what was read from these files: their paths, sizes and mtimes, and the label
    mapping (a rescan's or a pixel count's cache)."""
    h = hashlib.sha256(f"{CHECKS_VERSION}:{index.mask_offset}:{index.num_classes}".encode())
    for path in [*index.images, *map(str, index.targets), *dropped]:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except (OSError, TypeError):
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()[:24]


def _unpaired_images(index: FileIndex, dropped: list[str]) -> list[str]:
    """Images in an Oxford-layout folder that the index left out for lack of a mask."""
    images = Path(index.root) / "images"
    if not index.has_masks or not images.is_dir():
        return []
    known = set(index.images) | set(dropped)
    return [
        str(p)
        for p in sorted(images.glob("*.jpg"))
        if str(p) not in known and not p.name.startswith(".")
    ]


def _label_preflight(index: FileIndex, values: list[list[int] | None]) -> list[int]:
    """Indices of masks with values outside the classes; DataError if that is most of them,
    which means the value mapping (data.mask_offset) is wrong, not the files."""
    lo, hi = index.mask_offset, index.mask_offset + index.num_classes - 1
    seen = [(i, v) for i, v in enumerate(values) if v is not None]
    bad = [i for i, v in seen if v and (min(v) < lo or max(v) > hi)]
    if seen and len(bad) * 2 > len(seen):
        raw = sorted({x for _, v in seen for x in v})
        mapped = sorted({x - index.mask_offset for x in raw})
        fix = (
            f"set data.mask_offset={raw[0]} to map them to 0..{raw[-1] - raw[0]}"
            if raw[-1] - raw[0] < index.num_classes
            else f"no offset maps {len(raw)} values onto {index.num_classes} classes; "
            "remap the masks' values (or pick a data source with more classes)"
        )
        raise DataError(
            f"{len(bad)} of {len(seen)} masks have values outside the {index.num_classes} "
            f"classes: mask values {_short(raw)} become {_short(mapped)} after subtracting "
            f"data.mask_offset={index.mask_offset}, but classes are 0..{index.num_classes - 1}; "
            f"{fix}"
        )
    return bad


def _short(values: list[int]) -> str:
    return "{" + ", ".join(map(str, values[:8])) + (", ...}" if len(values) > 8 else "}")


def scan(index: FileIndex, dropped: list[str], workers: int | None = None) -> list[Problem]:
    """Decode every file of `index` in parallel (progress bar); all problems found."""
    workers = workers or min(32, 2 * (os.cpu_count() or 2))
    columns = (
        TextColumn("[bold]verifying data"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        Progress(*columns, console=console, transient=True) as progress,
        ThreadPoolExecutor(workers) as pool,
    ):
        task = progress.add_task("verify", total=len(index))
        results = []
        for result in pool.map(
            _check_sample, index.images, index.targets, [index.has_masks] * len(index)
        ):
            results.append(result)
            progress.advance(task)
    problems = [p for found, _ in results for p in found]
    for i in _label_preflight(index, [values for _, values in results]):
        lo = index.mask_offset
        extra = sorted(set(results[i][1]) - set(range(lo, lo + index.num_classes)))
        problems.append(
            Problem(
                str(index.targets[i]),
                "mask values",
                f"values {_short(extra)} outside {lo}..{lo + index.num_classes - 1}",
            )
        )
    problems += [_open_image(p)[1] or Problem(p, "not an image") for p in dropped]
    problems += [Problem(p, "no mask", "no trimap") for p in _unpaired_images(index, dropped)]
    return problems


def verify(
    index: FileIndex, dropped: list[str], run_dir: Path, *, use_cache: bool = True
) -> Report:
    """Scan (or reuse the cached scan of) `index`; write bad_files.txt and print the table."""
    cache = data_cache_dir() / "verify" / f"{fingerprint(index, dropped)}.json"
    cached = use_cache and cache.is_file()
    if cached:
        problems = [Problem(**p) for p in rundir.read_json(cache)]
    else:
        problems = scan(index, dropped)
        rundir.write_json(cache, [asdict(p) for p in problems])
    if problems:
        print_table(problems, len(index) + len(dropped))
        rundir.write_atomic(
            run_dir / rundir.BAD_FILES,
            lambda tmp: tmp.write_text(
                "".join(f"{p.kind}\t{p.path}\t{p.detail}\n" for p in problems)
            ),
        )
    bad = {p.path for p in problems}
    keep = [
        i
        for i, (image, target) in enumerate(zip(index.images, index.targets))
        if image not in bad and str(target) not in bad
    ]
    return Report(index.take(keep), problems, len(index) + len(dropped), cached)


def print_table(problems: list[Problem], total: int) -> None:
    table = Table(title=f"Data problems ({len(problems)} in {total} samples)", title_justify="left")
    for column in ("problem", "files", "example"):
        table.add_column(column)
    kinds: dict[str, list[Problem]] = {}
    for p in problems:
        kinds.setdefault(p.kind, []).append(p)
    for kind, found in sorted(kinds.items()):
        example = found[0]
        detail = f" ({example.detail})" if example.detail else ""
        table.add_row(kind, str(len(found)), f"{Path(example.path).name}{detail}")
    console.print(table)


def checked_index(
    index: FileIndex, dropped: list[str], on_bad: str, run_dir: Path, *, use_cache: bool = True
) -> FileIndex:
    """`index` without its bad samples (on_bad=skip), or DataError listing them (error)."""
    report = verify(index, dropped, run_dir, use_cache=use_cache)
    if report.problems and on_bad == "error":
        first = report.problems[0]
        raise DataError(
            f"{len(report.problems)} bad data files (listed in {run_dir / rundir.BAD_FILES}; e.g. "
            f"{first.path}: {first.kind}); fix or remove them, or set data.on_bad=skip"
        )
    if report.problems:
        console.print(
            f"skipping {len(index) - len(report.index)} of {len(index)} samples with bad files "
            f"(data.on_bad=skip; list in {run_dir / rundir.BAD_FILES})",
            markup=False,
        )
    return report.index
