"""Data verification: find the files that would fail or mislead training.

Every image (and mask) is opened and fully decoded in parallel: empty, non-image, truncated and
unreadable files, images without a mask, masks of another size and masks with values outside
the classes are reported in a table and in `bad_files.txt`, then skipped (`data.on_bad=skip`)
or refused (`data.on_bad=error`); so are the bad box labels the index found (each left out of
the index already, cvtrain.data.box_labels). Each scan's result is cached by the dataset's
fingerprint (file list, sizes, mtimes), so the next run does not rescan. If most masks are out
of range, the label mapping is wrong rather than the files: that is an error naming the mapping
that fits.

Decoding every file of a large dataset takes longer than starting to train, so a training run
without a cached scan only checks a sample of masks first (a wrong mapping still fails at once)
and leaves the full scan to a low-priority process during the first epoch, reported at its
end; meanwhile the tf.data pipeline drops any sample it cannot use. The split never depends on
the scan: bad samples are taken out of the split, so every run of a dataset splits it alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cvtrain import rundir
from cvtrain.config.schema import DataConfig
from cvtrain.console import console
from cvtrain.data.index import FileIndex, Split, sniff_image
from cvtrain.data.mask_folder import unpaired
from cvtrain.data.source_config import MAX_MASK_VALUE
from cvtrain.errors import DataError
from cvtrain.paths import data_cache_dir

CHECKS_VERSION = 1
log = logging.getLogger(__name__)


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
    """A mask's raw values as the pipeline reads them (palette PNGs: their indices)."""
    if mask.mode not in ("L", "I", "I;16", "P"):
        mask = mask.convert("L")  # what the pipeline's decode_png(channels=1) sees
    return np.asarray(mask)


def _mask_values(path: str) -> list[int] | None:
    mask, problem = _open_image(path)
    return None if problem else np.unique(mask_values(mask)).tolist()


def fingerprint(index: FileIndex, dropped: list[str]) -> str:
    """A key for what was read from these files, in any order: their paths, sizes and mtimes,
    and the label mapping (a scan's or a pixel count's cache)."""
    h = hashlib.sha256(f"{CHECKS_VERSION}:{index.class_values}:{index.ignore_value}".encode())
    for path in sorted({*index.images, *map(str, index.targets), *dropped}):
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except (OSError, TypeError):
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()[:24]


def _unpaired_images(index: FileIndex, dropped: list[str]) -> list[str]:
    """Images in the index's image folder without a mask, which the index left out (a dataset
    split by lists, such as VOC's, leaves out images on purpose)."""
    if not index.has_masks or index.subsets or not index.images:
        return []
    images, masks = Path(index.images[0]).parent, Path(str(index.targets[0])).parent
    return [str(p) for p in unpaired(images, masks) if str(p) not in dropped]


def _label_preflight(index: FileIndex, values: list[list[int] | None]) -> list[int]:
    """Indices of masks with values outside the mapping; DataError if that is most of them,
    which means the value mapping (data.mask_values) is wrong, not the files."""
    allowed = {*index.class_values, index.ignore_value} - {None}
    seen = [(i, v) for i, v in enumerate(values) if v is not None]
    bad = [i for i, v in seen if set(v) - allowed]
    if seen and len(bad) * 2 > len(seen):
        raw = sorted({x for _, v in seen for x in v} - {index.ignore_value})
        n = index.num_classes
        if raw[-1] > MAX_MASK_VALUE:
            fix = (
                f"values above {MAX_MASK_VALUE} (16-bit PNGs) cannot be classes: save the masks "
                "as 8-bit PNGs, one value per class"
            )
        elif raw[-1] - raw[0] < n:
            consecutive = list(range(raw[0], raw[0] + n))
            fix = f"set data.mask_offset={raw[0]} (that is, data.mask_values={consecutive})"
        elif len(raw) == n:
            fix = f"set data.mask_values to {raw} in the order of data.classes"
        else:
            fix = (
                f"{len(raw)} values cannot be {n} classes: list the classes in data.classes, "
                "their values in data.mask_values, and a value no class has in data.ignore_index"
            )
        raise DataError(
            f"{len(bad)} of {len(seen)} masks have values outside the mapping: mask values "
            f"{_short(raw)}, but the {n} classes ({', '.join(index.class_names)}) are stored as "
            f"{_describe(index)}; {fix}"
        )
    return bad


def _describe(index: FileIndex) -> str:
    """The stored values the mapping accepts: `1..3`, `{0, 255}`, `0..20 (255 ignored)`."""
    values = index.class_values
    offset = index.mask_offset
    text = f"{offset}..{offset + len(values) - 1}" if offset is not None else _short(list(values))
    return text if index.ignore_value is None else f"{text} ({index.ignore_value} ignored)"


def _short(values: list[int]) -> str:
    return "{" + ", ".join(map(str, values[:8])) + (", ...}" if len(values) > 8 else "}")


def scan(
    index: FileIndex, dropped: list[str], workers: int | None = None, progress: bool = True
) -> list[Problem]:
    """Decode every file of `index` in parallel (with a progress bar); all problems found."""
    workers = workers or min(32, 2 * (os.cpu_count() or 2))
    columns = (
        TextColumn("[bold]verifying data"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        Progress(*columns, console=console, transient=True, disable=not progress) as bar,
        ThreadPoolExecutor(workers) as pool,
    ):
        task = bar.add_task("verify", total=len(index))
        results = []
        for result in pool.map(
            _check_sample, index.images, index.targets, [index.has_masks] * len(index)
        ):
            results.append(result)
            bar.advance(task)
    problems = [p for found, _ in results for p in found]
    for i in _label_preflight(index, [values for _, values in results]):
        extra = sorted(set(results[i][1]) - {*index.class_values, index.ignore_value})
        problems.append(
            Problem(
                str(index.targets[i]),
                "mask values",
                f"values {_short(extra)} outside {_describe(index)}",
            )
        )
    problems += [_open_image(p)[1] or Problem(p, "not an image") for p in dropped]
    problems += [Problem(p, "no mask") for p in _unpaired_images(index, dropped)]
    problems += [Problem(*found) for found in index.label_problems]  # boxes: found by indexing
    return problems


def _cache_path(index: FileIndex, dropped: list[str]) -> Path:
    return data_cache_dir() / "verify" / f"{fingerprint(index, dropped)}.json"


def _scan_and_cache(index: FileIndex, dropped: list[str], cache: Path, progress: bool) -> None:
    rundir.write_json(cache, [asdict(p) for p in scan(index, dropped, progress=progress)])


def verify(
    index: FileIndex, dropped: list[str], run_dir: Path, *, use_cache: bool = True
) -> Report:
    """Scan (or reuse the cached scan of) `index`; write bad_files.txt and print the table."""
    cache = _cache_path(index, dropped)
    cached = use_cache and cache.is_file()
    if not cached:
        _scan_and_cache(index, dropped, cache, progress=True)
    problems = [Problem(**p) for p in rundir.read_json(cache)]
    bad = _record(problems, len(index) + len(dropped), run_dir)
    return Report(_good(index, bad), problems, len(index) + len(dropped), cached)


def _good(index: FileIndex, bad: set[str]) -> FileIndex:
    """`index` less the samples whose image or mask is in `bad`."""
    pairs = zip(index.images, map(str, index.targets))
    return index.take([i for i, (image, target) in enumerate(pairs) if not {image, target} & bad])


def _record(problems: list[Problem], total: int, run_dir: Path) -> set[str]:
    """Print the table and write bad_files.txt; the bad paths."""
    if problems:
        print_table(problems, total)
        rundir.write_atomic(
            run_dir / rundir.BAD_FILES,
            lambda tmp: tmp.write_text(
                "".join(f"{p.kind}\t{p.path}\t{p.detail}\n" for p in problems)
            ),
        )
    return {p.path for p in problems}


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


def _refuse(problems: list[Problem], run_dir: Path) -> DataError:
    first = problems[0]
    return DataError(
        f"{len(problems)} bad data files (listed in {run_dir / rundir.BAD_FILES}; e.g. "
        f"{first.path}: {first.kind}); fix or remove them, or set data.on_bad=skip"
    )


def _apply(problems: list[Problem], samples: FileIndex, on_bad: str, run_dir: Path) -> set[str]:
    """The bad paths among `samples` (on_bad=skip, said in a line), or DataError (error)."""
    if problems and on_bad == "error":
        raise _refuse(problems, run_dir)
    bad = {p.path for p in problems}
    if problems:
        skipped = len(samples) - len(_good(samples, bad))
        console.print(
            f"skipping {skipped} of {len(samples)} samples with bad files "
            f"(data.on_bad=skip; list in {run_dir / rundir.BAD_FILES})",
            markup=False,
        )
    return bad


def checked_index(
    index: FileIndex, dropped: list[str], on_bad: str, run_dir: Path, *, use_cache: bool = True
) -> FileIndex:
    """`index` without its bad samples (on_bad=skip), or DataError listing them (error)."""
    report = verify(index, dropped, run_dir, use_cache=use_cache)
    _apply(report.problems, index, on_bad, run_dir)
    return report.index


def without(split: Split, bad: set[str]) -> Split:
    """`split` less the samples with a bad file; DataError if training or validation is left
    empty."""
    train, val = _good(split.train, bad), _good(split.val, bad)
    for name, part in (("training", train), ("validation", val)):
        if not len(part):
            raise DataError(f"every {name} sample has a bad file (see bad_files.txt); fix them")
    return Split(train, val, None if split.test is None else _good(split.test, bad))


SAMPLE_MASKS = 32  # masks decoded before a deferred scan, so a wrong value mapping fails at once


def checked_split(
    split: Split, dropped: list[str], cfg: DataConfig, run_dir: Path, *, defer: bool = False
) -> tuple[Split, BackgroundScan | None]:
    """`split` less its bad samples, by the cached scan or a scan now. With `defer` (training,
    data.on_bad=skip) an uncached scan runs in the background instead: the split comes back
    whole, with the scan to finish when the first epoch ends."""
    samples = split.train.joined(split.val)
    if split.test is not None:
        samples = samples.joined(split.test)
    cache = _cache_path(samples, dropped)
    if defer and cfg.on_bad == "skip" and not cache.is_file():
        _check_mapping(samples)
        return split, BackgroundScan.start(samples, dropped, cache, run_dir)
    report = verify(samples, dropped, run_dir)
    return without(split, _apply(report.problems, samples, cfg.on_bad, run_dir)), None


def _check_mapping(index: FileIndex) -> None:
    """Decode a spread of SAMPLE_MASKS masks: DataError now if most are out of range."""
    if not index.has_masks:
        return
    picked = index.take(range(0, len(index), max(1, len(index) // SAMPLE_MASKS))[:SAMPLE_MASKS])
    _label_preflight(picked, [_mask_values(str(mask)) for mask in picked.targets])


@dataclass
class BackgroundScan:
    """The full scan, in a process of lower priority than training (and no shared GIL), that
    writes the scan cache; `finish` reports what it found."""

    process: subprocess.Popen
    samples: FileIndex
    dropped: list[str]
    cache: Path
    run_dir: Path

    @classmethod
    def start(
        cls, samples: FileIndex, dropped: list[str], cache: Path, run_dir: Path
    ) -> BackgroundScan:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C stops training, which this process then notices
            text=True,
        )
        job = {"index": asdict(samples), "dropped": dropped, "cache": str(cache)}
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        log.info("checking every data file in the background; results after the first epoch")
        return cls(process, samples, dropped, cache, run_dir)

    def finish(self) -> set[str]:
        """Wait for the scan; print and list what it found. The bad paths (the pipeline has
        dropped the pairs it could not use; the next run leaves them all out)."""
        errors = self.process.stderr.read().strip()
        if self.process.wait() != 0 or not self.cache.is_file():
            log.warning("the background data scan failed (%s); run mode=verify_data", errors)
            return set()
        problems = [Problem(**p) for p in rundir.read_json(self.cache)]
        bad = _record(problems, len(self.samples) + len(self.dropped), self.run_dir)
        if problems:
            console.print(
                f"the data scan found bad files in {len(bad)} paths (list in "
                f"{self.run_dir / rundir.BAD_FILES}): this run's pipeline drops the pairs it "
                "cannot use; the next run leaves out every listed sample",
                markup=False,
            )
        return bad


def _scan_job() -> None:
    """The background scan's process: the job comes on stdin, the result goes to the cache."""
    if hasattr(os, "nice"):
        os.nice(10)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    job = json.load(sys.stdin)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in job["index"].items()}
    try:
        _scan_and_cache(FileIndex(**fields), job["dropped"], Path(job["cache"]), progress=False)
    except DataError as exc:
        sys.exit(str(exc))


def _exit_with_parent(parent: int) -> None:
    """A scan nobody waits for any more (training stopped or crashed) stops too."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


if __name__ == "__main__":
    _scan_job()
