"""What pruning saves: the same Optuna search with `hydra.sweeper.pruner=none` and `median`.

Same space (configs/hparams_search/segmentation_optuna.yaml: lr, batch size, width, dropout),
same trial budget and sampler seed, on the real Oxford pets sample (seeded split: the last
`data.val_samples` of the chapter's seed-1337 shuffle); the two variants alternate within each
seed (A B, then B A) and each sweep runs as `cvtrain -m` does, in a subprocess. Reported per
seed: wall seconds of the whole sweep, the best objective found (best val_loss), trials
pruned; then the median wall-time ratio (none / median) with its range, and the best
objectives side by side. Target: >= 2x less wall time, best objective within noise.

    python benchmarks/pruning.py [--seeds 1 2 3] [--trials 12] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import data_overrides, save, table

from cvtrain.rundir import compare

PRUNERS = ("none", "median")


def sweep(pruner: str, seed: int, trials: int, epochs: int, folder: Path) -> dict:
    out = folder / f"{pruner}-{seed}"
    command = [
        sys.executable,
        "-m",
        "cvtrain",
        "-m",
        "hparams_search=segmentation_optuna",
        *data_overrides(),
        "data.image_size=[64,64]",
        "data.val_samples=90",
        "data.cache=memory",
        "trainer.prediction_images=0",
        "trainer.precision=float32",
        f"trainer.epochs={epochs}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweeper.pruner={pruner}",
        f"hydra.sweep.dir={out}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=folder, capture_output=True)
    seconds = time.perf_counter() - start
    results = yaml.safe_load((out / "optimization_results.yaml").read_text())
    jobs = compare.sorted_runs(compare.find_runs(out))
    epochs_run = sum(len((j.path / "history.csv").read_text().splitlines()) - 1 for j in jobs)
    return {
        "pruner": pruner,
        "seed": seed,
        "wall_s": round(seconds, 1),
        "best_val_loss": round(results["best_value"], 4),
        "pruned": sum(j.status == compare.PRUNED for j in jobs),
        "epochs_trained": epochs_run,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cvtrain-pruning-") as tmp:
        for i, seed in enumerate(args.seeds):
            order = PRUNERS if i % 2 == 0 else PRUNERS[::-1]  # A B, then B A
            for pruner in order:
                rows.append(sweep(pruner, seed, args.trials, args.epochs, Path(tmp)))
                print(rows[-1], flush=True)
    by = {(r["pruner"], r["seed"]): r for r in rows}
    ratios = [by["none", s]["wall_s"] / by["median", s]["wall_s"] for s in args.seeds]
    gaps = [by["median", s]["best_val_loss"] - by["none", s]["best_val_loss"] for s in args.seeds]
    summary = {
        "wall_ratio_none_over_median": {
            "median": round(statistics.median(ratios), 2),
            "range": f"{min(ratios):.2f}-{max(ratios):.2f}",
            "per_seed": [round(r, 2) for r in ratios],
        },
        "best_val_loss_median_minus_none": {
            "median": round(statistics.median(gaps), 4),
            "range": f"{min(gaps):.4f}-{max(gaps):.4f}",
            "per_seed": [round(g, 4) for g in gaps],
        },
    }
    table(rows)
    print(summary)
    setup = (
        f"segmentation_optuna on the real sample, 64 px, {args.trials} trials x "
        f"{args.epochs} epochs, sampler seeds {args.seeds}; pruner none vs median alternated"
    )
    save("pruning", {"setup": setup, "table": rows, "summary": summary})


if __name__ == "__main__":
    main()
