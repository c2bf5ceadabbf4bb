"""The small-data recipe (experiment=small_data_segmentation) against the chapter's defaults and
with each loss, on the real Oxford-IIIT Pet sample: one seeded run each, as whole `cvtrain`
commands, at 128x128 on the sample's seeded split (split seed 1337, the last 51 pairs
validation; training seed 42).

Reported per run: the validation mean IoU and per-class IoU of the checkpoint cvtrain keeps
(best val_loss), the final epoch's mean IoU, and wall minutes from launch to exit. `--parallel 2`
runs two at once (shorter in all, but every wall time then includes sharing the cores).

    python benchmarks/small_data_recipe.py [--only recipe] [--parallel 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import REAL_SAMPLE, save, table

from cvtrain import rundir
from cvtrain.console import console

DATA = [f"data.root={REAL_SAMPLE}", "data.val_samples=51", "data.val_fraction=null"]
RECIPE = ["experiment=small_data_segmentation", *DATA]
# name -> the command's overrides. The chapter's defaults get the recipe's input size and 12
# epochs (each costs about 2.5 of the recipe's on this CPU).
RUNS = {
    "chapter defaults (seg_convnet, rmsprop, crossentropy)": [
        "task=segmentation", *DATA, "data.image_size=[128,128]", "trainer.epochs=12",
    ],
    "recipe (crossentropy_dice)": RECIPE,
    "recipe, loss=crossentropy": [*RECIPE, "loss=crossentropy"],
    "recipe, loss=dice": [*RECIPE, "loss=dice"],
    "recipe, loss=focal": [*RECIPE, "loss=focal"],
}  # fmt: skip


def run(name: str, overrides: list[str], run_dir: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cvtrain", *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
    )
    minutes = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    best, final = metrics["best"], metrics["final"]
    row = {
        "run": name,
        "val mIoU": round(best["val_mean_iou"], 3),
        "pet": round(best["val_iou_pet"], 3),
        "background": round(best["val_iou_background"], 3),
        "border": round(best["val_iou_border"], 3),
        "kept epoch": f"{metrics['best_epoch']} of {metrics['epochs_run']}",
        "final-epoch mIoU": round(final["val_mean_iou"], 3),
        "wall min": round(minutes, 1),
    }
    console.log(json.dumps(row))
    return {"row": row, "overrides": overrides, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="a run whose name starts with this")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, help="keep the run dirs here (default: deleted)")
    args = parser.parse_args()
    runs = {k: v for k, v in RUNS.items() if not args.only or k.startswith(args.only)}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        out = args.out or Path(tmp)
        jobs = [(name, o, out / f"run{i}") for i, (name, o) in enumerate(runs.items())]
        done = list(pool.map(lambda job: run(*job), jobs))
    rows = [d["row"] for d in done]
    table(rows)
    save(
        "small_data_recipe" if not args.only else f"small_data_recipe_{args.only.split()[0]}",
        {
            "setup": (
                f"real Oxford-IIIT Pet sample (451 pairs: 400 train / 51 val, split seed 1337), "
                f"128x128, training seed 42, float32 on {args.parallel} run(s) at a time on this "
                "CPU; val metrics of the kept (best val_loss) checkpoint; wall = whole process."
            ),
            "table": rows,
            "runs": {d["row"]["run"]: {"overrides": d["overrides"], **d["metrics"]} for d in done},
        },
    )


if __name__ == "__main__":
    main()
