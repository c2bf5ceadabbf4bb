"""mode=export: a finished run as a servable artefact, checked against the model in memory.

Every format takes raw uint8 images of any size and resizes them (bilinear, as training does;
the keras format skips training's rounding to uint8, a difference below one intensity step):
- saved_model: signature `serving_default` (uint8 images -> probabilities; segmentation
  probabilities at each input's size) plus `serve` (float32 0..255 at the training size).
- tflite: the `serving_default` signature, converted to TFLite builtins.
- onnx: the same function as an ONNX graph (tf2onnx; input `images`, any height and width),
  checked through onnxruntime. Needs the `onnx` extra.
- keras: a .keras model, a resize op + the trained model (output at the training size).
Exports compute in float32, also for a mixed-precision run. The exported file is reloaded and
its outputs compared with the in-memory model on a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtrain.config.schema import RunConfig
from cvtrain.console import console
from cvtrain.errors import ConfigError
from cvtrain.inference.export_formats import FORMATS
from cvtrain.inference.exporters import Exportable, remove_scratch
from cvtrain.registry import resolve
from cvtrain.rundir import EXPORT
from cvtrain.rundir.saved import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task

log = logging.getLogger(__name__)

PARITY_SEED = 0


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> ExportResult:
    runs = load_runs(cfg, overrides)
    out_dir = output_dir(cfg, runs, run_dir, EXPORT)
    if cfg.output:
        check_output(out_dir / FORMATS[cfg.format].filename)
    return export(runs[0], cfg.format, out_dir)


def check_output(path: Path) -> None:
    """cvtrain replaces an export only in its own run dirs (`<run>/export/`): in a folder given
    as `output=` it writes over nothing, before TensorFlow loads."""
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"output={path.parent} is a file; give a folder to export into")
    if path.exists():
        raise ConfigError(
            f"output={path.parent} already holds {path.name}; cvtrain does not write over it: "
            "remove it or choose another output="
        )


def parity_images(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded uint8 batches: one at the training size, one at an awkward other size."""
    rng = np.random.default_rng(PARITY_SEED)
    odd = (size[0] * 3 // 2 + 7, size[1] + 5)
    return (
        rng.integers(0, 256, (2, *size, 3), dtype=np.uint8),
        rng.integers(0, 256, (2, *odd, 3), dtype=np.uint8),
    )


def export(saved: SavedRun, fmt: str, out_dir: Path) -> ExportResult:
    from cvtrain.inference.serving import float32_model, model_image_size

    model = float32_model(saved.load_model())
    size = model_image_size(model)
    predict_raw = get_task(saved.config.task.name).serving(model)
    spec = FORMATS[fmt]
    job = Exportable(model, predict_raw, size, parity_images(size))
    path = out_dir / spec.filename
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_scratch(out_dir)
    diff = resolve(spec.exporter)(job, path)
    result = ExportResult(path, fmt, diff, spec.tolerance)
    if diff > result.tolerance:
        raise RuntimeError(
            f"export parity check failed: exported {fmt} differs from the in-memory model by "
            f"{diff:.2e} > {result.tolerance:.0e} (written to {path} for inspection)"
        )
    console.print(
        f"exported {fmt} to {path}; parity check passed: max |exported - in-memory| = "
        f"{diff:.2e} <= {result.tolerance:.0e} on {sum(len(b) for b in job.batches)} images"
    )
    console.print(spec.usage.format(path=path), markup=False, soft_wrap=True)
    return result
