"""The small-data classification recipe (experiment=small_data_classification) against the
chapter's defaults and the variants tried on the way, on the real Oxford-IIIT Pet sample.

The sample's 451 photos are laid out as the book's cats_vs_dogs_small
(`<tmp>/{train,validation,test}/<class>/`, symlinks, nothing copied): cat vs dog (the file name's
capital) or its 3 breeds, each class split 60/20/20 by a seeded shuffle (split seed 1337).
Every run is a whole `cvtrain` command from random weights (training seed 42) at 128x128,
then `cvtrain mode=evaluate eval.split=test` on the checkpoint it kept (best val_loss).
Reported per run: test accuracy and AUC (two classes), the kept epoch, wall minutes, and
the validation accuracy of every epoch (benchmarks/results/classification_recipe.png draws
it for the defaults and the recipe).

    python benchmarks/classification_recipe.py [--labels species|breeds] [--only recipe]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from harness import REAL_SAMPLE, RESULTS, draw_curves, run_cvtrain, save, table

from cvtrain import rundir
from cvtrain.training.trainer import read_history

SPLIT_SEED, SEED = 1337, 42
SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))
BASE = ["data.image_size=[128,128]", f"trainer.seed={SEED}", "trainer.precision=float32"]
DEFAULTS = ["experiment=book_classification", *BASE, "trainer.epochs=30"]
RECIPE = ["experiment=small_data_classification", *BASE]
RUNS = {
    "chapter defaults (mini_xception, rmsprop 1e-3, bn 0.99)": DEFAULTS,
    "defaults + model.bn_momentum=0.9": [*DEFAULTS, "model.bn_momentum=0.9"],
    "recipe (= defaults + bn 0.9 + adam 1e-3 cosine, 30 epochs)": RECIPE,
    "recipe, 40 epochs": [*RECIPE, "trainer.epochs=40"],
}  # fmt: skip


def label_of(image: Path, labels: str) -> str:
    breed = image.stem.rsplit("_", 1)[0]
    if labels == "breeds":
        return breed
    return "cat" if breed[0].isupper() else "dog"


def layout(root: Path, labels: str) -> Path:
    """The book's folder layout of the sample, by a seeded per-class shuffle."""
    by_class: dict[str, list[Path]] = {}
    for image in sorted((REAL_SAMPLE / "images").iterdir()):
        by_class.setdefault(label_of(image, labels), []).append(image)
    for name, images in by_class.items():
        random.Random(SPLIT_SEED).shuffle(images)
        start = 0
        for i, (split, share) in enumerate(SPLITS):
            end = len(images) if i == len(SPLITS) - 1 else start + round(share * len(images))
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for image in images[start:end]:
                (folder / image.name).symlink_to(image)
            start = end
    return root


def run(name: str, overrides: list[str], data: Path, run_dir: Path) -> dict:
    start = time.perf_counter()
    run_cvtrain(*overrides, "data=image_folder", f"data.root={data}", f"hydra.run.dir={run_dir}")
    minutes = (time.perf_counter() - start) / 60
    run_cvtrain("mode=evaluate", f"run={run_dir}", "eval.split=test")
    test = rundir.read_json(run_dir / rundir.EVAL / "metrics.json")["metrics"]
    kept = rundir.read_json(run_dir / rundir.METRICS)
    history = read_history(run_dir / rundir.HISTORY)
    return {
        "run": name,
        "test accuracy": round(test["accuracy"], 3),
        "test AUC": round(test["roc_auc"], 3) if "roc_auc" in test else "-",
        "kept epoch": f"{kept['best_epoch']} of {kept['epochs_run']}",
        "wall min": round(minutes, 1),
        "seed / split": f"{SEED} / {SPLIT_SEED} 60-20-20",
        "val accuracy per epoch": [round(v, 3) for v in history["val_accuracy"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", choices=("species", "breeds"), default="species")
    parser.add_argument("--only", nargs="*", help="substrings of the run names to run")
    args = parser.parse_args()
    runs = {k: v for k, v in RUNS.items() if not args.only or any(o in k for o in args.only)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cvtrain-recipe-") as tmp:
        data = layout(Path(tmp) / "data", args.labels)
        for i, (name, overrides) in enumerate(runs.items()):
            rows.append(run(name, overrides, data, Path(tmp) / f"run{i}"))
            print(rows[-1], flush=True)
    curves = {r["run"]: r.pop("val accuracy per epoch") for r in rows}
    table(rows)
    draw_curves(
        curves, RESULTS / f"classification_recipe_{args.labels}.png", "validation accuracy", "o-"
    )
    setup = (
        f"Oxford pets sample as {args.labels}, 128 px, from random weights, seed {SEED}, "
        f"split seed {SPLIT_SEED} 60/20/20 per class; test = the held-out 20%"
    )
    payload = {"setup": setup, "table": rows, "val_accuracy_per_epoch": curves}
    save(f"classification_recipe_{args.labels}", payload)


if __name__ == "__main__":
    main()
