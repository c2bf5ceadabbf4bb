"""mode=predict: run a finished run (or an ensemble) on new images.

Segmentation writes `masks/<name>.png` at each input's own resolution, valued class id +
`predict.mask_offset` (by default the Oxford trimap values 1/2/3, so masks drop into the
dataset's layout), and `overlays/<name>.png`. Classification writes `predictions.csv`
(file, label, probability). Inputs that are not readable images are reported and skipped.
"""

from __future__ import annotations

import csv
import glob
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import track

from cvtrain import rundir
from cvtrain.config import RunConfig
from cvtrain.console import console
from cvtrain.data.index import sniff_image
from cvtrain.errors import DataError
from cvtrain.saved_run import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task
from cvtrain.tasks.base import class_probabilities

log = logging.getLogger(__name__)

MASKS, OVERLAYS, CSV = "masks", "overlays", "predictions.csv"  # the tasks' write_predictions


@dataclass
class PredictResult:
    output: Path
    written: list[Path] = field(default_factory=list)  # masks, or the csv
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> PredictResult:
    files = expand_inputs(cfg.input or "")
    runs = load_runs(cfg, overrides)
    return predict(runs, files, output_dir(cfg, runs, run_dir, rundir.PREDICT))


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
    files: list[Path], skipped: list[tuple[Path, str]], description: str
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


def predict(runs: list[SavedRun], files: list[Path], out_dir: Path) -> PredictResult:
    cfg = runs[0].config
    task = get_task(cfg.task.name)
    task.check_inputs(files)

    from cvtrain.ensemble import average
    from cvtrain.serving import raw_predictor

    models = [saved.load_model() for saved in runs]
    predictors = [raw_predictor(model, task.dense) for model in models]
    result = PredictResult(out_dir)
    predictions = (
        (path, image, average([class_probabilities(p(image[None]).numpy())[0] for p in predictors]))
        for path, image in readable_images(files, result.skipped, "predicting")
    )
    result.written, where = task.write_predictions(predictions, out_dir, cfg, runs[0].class_names)
    log_skipped(result.skipped)
    report(result, where, len(files))
    return result


def write_csv(header: Sequence[str], rows: list[Sequence[str]], path: Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    rundir.write_atomic(path, write)
    return path


def log_skipped(skipped: list[tuple[Path, str]]) -> None:
    for path, why in skipped:
        log.warning("skipped %s: %s", path, why)


def report(result: PredictResult, where: str, total: int) -> None:
    done = total - len(result.skipped)
    skipped = f"; skipped {len(result.skipped)} unreadable" if result.skipped else ""
    console.print(f"predicted {done} of {total} images -> {where}{skipped}")
