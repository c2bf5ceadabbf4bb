"""mode=predict: run a finished run (or an ensemble) on new images.

Segmentation writes `masks/<name>.png` at each input's own resolution, valued class id +
`predict.mask_offset` (by default the Oxford trimap values 1/2/3, so masks drop into the
dataset's layout), and `overlays/<name>.png`. Classification writes `predictions.csv`
(file, label, probability). Inputs that are not readable images are reported and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cvtrain import rundir
from cvtrain.config.schema import RunConfig
from cvtrain.console import console
from cvtrain.inference.input_files import expand_inputs, log_skipped, readable_images
from cvtrain.rundir.saved import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task
from cvtrain.tasks.base import class_probabilities


@dataclass
class PredictResult:
    output: Path
    written: list[Path] = field(default_factory=list)  # masks, or the csv
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> PredictResult:
    files = expand_inputs(cfg.input or "")
    runs = load_runs(cfg, overrides)
    return predict(runs, files, output_dir(cfg, runs, run_dir, rundir.PREDICT))


def predict(runs: list[SavedRun], files: list[Path], out_dir: Path) -> PredictResult:
    cfg = runs[0].config
    task = get_task(cfg.task.name)
    task.check_inputs(files)

    from cvtrain.inference.ensemble import average

    models = [saved.load_model() for saved in runs]
    predictors = [task.serving(model) for model in models]
    result = PredictResult(out_dir)
    predictions = (
        (path, image, average([class_probabilities(p(image[None]).numpy())[0] for p in predictors]))
        for path, image in readable_images(files, result.skipped, "predicting")
    )
    result.written, where = task.write_predictions(predictions, out_dir, cfg, runs[0].class_names)
    log_skipped(result.skipped)
    report(result, where, len(files))
    return result


def report(result: PredictResult, where: str, total: int) -> None:
    done = total - len(result.skipped)
    skipped = f"; skipped {len(result.skipped)} unreadable" if result.skipped else ""
    console.print(f"predicted {done} of {total} images -> {where}{skipped}")
