"""mode=explain: Grad-CAM heatmaps of a finished run on new images.

For each readable input, `<name>.png` shows the image and beside it the heatmap of one class over
it, and `heatmaps/<name>.png` the heatmap alone (0..255), both at the image's own size;
`explanations.csv` lists file, class and score (the class's probability; for segmentation its mean
over the pixels). Classification explains each image's predicted class, segmentation the first
class not named background (pet in the Oxford layout), unless `explain.class` names one;
`explain.layer` picks another feature map. Written to `<run>/explain` or `output=`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtrain import plots, rundir
from cvtrain.config.schema import RunConfig
from cvtrain.console import console
from cvtrain.data.index import class_id
from cvtrain.errors import ConfigError
from cvtrain.inference.input_files import (
    check_unique_names,
    expand_inputs,
    log_skipped,
    readable_images,
)
from cvtrain.rundir.saved import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task
from cvtrain.tasks.base import output_classes
from cvtrain.tasks.specs import SPECS

HEATMAPS, CSV = "heatmaps", "explanations.csv"


@dataclass
class ExplainResult:
    output: Path
    layer: str = ""  # the feature map, as nested model names / layer name
    written: list[Path] = field(default_factory=list)  # the image | heatmap panels
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> ExplainResult:
    files = expand_inputs(cfg.input or "")
    check_unique_names(files)
    saved = load_runs(cfg, overrides)[0]
    if not SPECS[saved.config.task.name].explains:
        raise ConfigError(
            f"mode=explain: Grad-CAM of a {saved.config.task.name} run is not supported; it "
            "explains classification and segmentation runs"
        )
    if saved.class_names:  # a wrong explain.class fails before TensorFlow loads
        target_class(saved.config, saved.class_names)
    return explain(saved, files, output_dir(cfg, [saved], run_dir, rundir.EXPLAIN))


def target_class(cfg: RunConfig, class_names: Sequence[str]) -> int | None:
    """`explain.class` as an id, else the task's default (None: each image's predicted class)."""
    chosen = class_id(cfg.explain.target_class, class_names, "explain.class")
    if chosen is None:
        chosen = get_task(cfg.task.name).explain_class(class_names)
    return chosen


def explain(saved: SavedRun, files: list[Path], out_dir: Path) -> ExplainResult:
    from cvtrain.inference.gradcam import GradCam

    model = saved.load_model()
    names = saved.class_names or tuple(
        str(i) for i in range(output_classes(model.output_shape[-1]))
    )
    wanted = target_class(saved.config, names)
    gradcam = GradCam(model, saved.config.explain.layer)
    result = ExplainResult(out_dir, gradcam.layer_name)
    rows = []
    for path, image in readable_images(files, result.skipped, "explaining"):
        cam = gradcam(image, wanted)
        name = f"{path.stem}.png"
        panel = plots.save_png(plots.heatmap_panel(image, cam.heatmap), out_dir / name)
        plots.save_png(np.round(cam.heatmap * 255).astype(np.uint8), out_dir / HEATMAPS / name)
        rows.append((str(path), names[cam.class_id], f"{cam.score:.6f}", str(panel)))
        result.written.append(panel)
    rundir.write_csv(out_dir / CSV, ("file", "class", "score", "image"), rows)
    log_skipped(result.skipped)
    skipped = f"; skipped {len(result.skipped)} unreadable" if result.skipped else ""
    console.print(
        f"explained {len(rows)} of {len(files)} images at layer {result.layer} -> "
        f"{out_dir} ({CSV}){skipped}",
        markup=False,
    )
    return result
