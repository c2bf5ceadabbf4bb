"""The small-data detection recipe (experiment=small_data_detection) against the task's
defaults and the variants tried on the way, on the real Oxford-IIIT Pet sample's head boxes.

The sample's 222 photos with a head box (data=oxford_pets_heads; one image has two heads) are
split 80/20 by the seeded shuffle (split seed 1337: 178 train, 44 validation). Every run is a
whole `cvtrain` command from random weights (training seed 42), then `cvtrain mode=evaluate`
on the checkpoint it kept (best val_loss) for the validation split's COCO scores: AP50 with
classes ignored (the head found, cat or dog), mAP@[.5:.95], AP50 and per-class AP50.
benchmarks/results/detection_recipe.png draws val_map50 per epoch.

    python benchmarks/detection_recipe.py [--only recipe]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import REAL_SAMPLE, RESULTS, draw_curves, run_cvtrain, save, table

from cvtrain import rundir
from cvtrain.training.trainer import read_history

SPLIT_SEED, SEED = 1337, 42
DATA = ["data=oxford_pets_heads", f"data.root={REAL_SAMPLE}", f"trainer.seed={SEED}"]
BASE = [*DATA, "trainer.precision=float32"]
DEFAULTS = ["task=detection", *BASE]
RECIPE = ["experiment=small_data_detection", *BASE]
SMALLER = ["data.image_size=[160,160]", "trainer.epochs=150"]
RUNS = {
    "task defaults (256 px, adam 1e-3, bn 0.99, 50 epochs)": DEFAULTS,
    "recipe (224 px, bn 0.9, adam 2e-3 cosine, 100 epochs)": RECIPE,
    "recipe, width 0.5, zoom 0.3, translation 0.2": [
        *RECIPE, "model.width=0.5", "data.augment.zoom=0.3", "data.augment.translation=0.2"
    ],
    "recipe at 160 px, 150 epochs": [*RECIPE, *SMALLER],
    "recipe at 160 px, 150 epochs, width 0.5, zoom 0.3, translation 0.2": [
        *RECIPE, *SMALLER, "model.width=0.5", "data.augment.zoom=0.3",
        "data.augment.translation=0.2",
    ],
}  # fmt: skip


def run(name: str, overrides: list[str], run_dir: Path) -> dict:
    start = time.perf_counter()
    run_cvtrain(*overrides, f"hydra.run.dir={run_dir}")
    minutes = (time.perf_counter() - start) / 60
    run_cvtrain("mode=evaluate", f"run={run_dir}")
    scores = rundir.read_json(run_dir / rundir.EVAL / "metrics.json")["metrics"]
    kept = rundir.read_json(run_dir / rundir.METRICS)
    history = read_history(run_dir / rundir.HISTORY)
    per_class = scores["per_class"]
    return {
        "run": name,
        "AP50 (any class)": round(scores["map50_any_class"], 3),
        "mAP": round(scores["map"], 3),
        "AP50": round(scores["map50"], 3),
        "AP50 cat": round(per_class["cat"]["ap50"], 3),
        "AP50 dog": round(per_class["dog"]["ap50"], 3),
        "kept epoch": f"{kept['best_epoch']} of {kept['epochs_run']}",
        "wall min": round(minutes, 1),
        "seed / split": f"{SEED} / {SPLIT_SEED} 80-20",
        "val_map50 per epoch": [round(v, 3) for v in history["val_map50"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="substrings of the run names to run")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    args = parser.parse_args()
    runs = {k: v for k, v in RUNS.items() if not args.only or any(o in k for o in args.only)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cvtrain-detection-") as tmp:
        for i, (name, overrides) in enumerate(runs.items()):
            rows.append(run(name, [*overrides, *args.extra], Path(tmp) / f"run{i}"))
            print(rows[-1], flush=True)
    curves = {r["run"]: r.pop("val_map50 per epoch") for r in rows}
    table(rows)
    draw_curves(curves, RESULTS / "detection_recipe.png", "val_map50")
    setup = (
        f"Oxford pets sample head boxes (222 images), from random weights, seed {SEED}, split "
        f"seed {SPLIT_SEED} 80/20 (178 train, 44 validation); scores of the kept checkpoint "
        "on the validation split"
    )
    save("detection_recipe", {"setup": setup, "table": rows, "val_map50_per_epoch": curves})


if __name__ == "__main__":
    main()
