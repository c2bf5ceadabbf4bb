"""What pruning saves: the same Optuna search with `hydra.sweeper.pruner=none`, `median` and
`hyperband`.

Same space (configs/hparams_search/segmentation_optuna.yaml: lr, batch size, width, dropout),
same trial budget and sampler seed, on the real Oxford pets sample (seeded split: the last
`data.val_samples` of the chapter's seed-1337 shuffle); the variants alternate within each
seed (A B C, then C B A) and each sweep runs as `cvtrain -m` does, in a subprocess. Reported
per seed: wall seconds of the whole sweep, the best objective found (best val_loss), trials
pruned and the epoch each job stopped at; then for each pruner the median wall-time ratio
(none / it) with its range, and its best objective minus the unpruned one's beside the noise
yardstick: how far the unpruned search's own best moves from one sampler seed to another.
Target: >= 2x less wall time, best objective within that noise.

    python benchmarks/pruning.py [--seeds 1 2 3] [--trials 20] [--epochs 12]
        [--pruners none median hyperband]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import data_overrides, save, table

from cvtrain import rundir
from cvtrain.rundir import compare

BASELINE = "none"


def sweep(pruner: str, seed: int, trials: int, epochs: int, folder: Path) -> tuple[dict, list]:
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
    curves = job_curves(out)
    jobs = [compare.read_run(p) for p in job_dirs(out)]
    epochs_per_job = [len(c["val_loss"]) for c in curves]
    row = {
        "pruner": pruner,
        "seed": seed,
        "wall_s": round(seconds, 1),
        "best_val_loss": round(results["best_value"], 4),
        "pruned": sum(j.status == compare.PRUNED for j in jobs),
        "epochs_trained": sum(epochs_per_job),
        "epochs_per_job": epochs_per_job,  # in job order
    }
    return row, curves


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job run dirs in job order (0, 1, ..., not as names sort)."""
    return sorted(compare.find_runs(sweep_dir), key=lambda p: int(p.name))


def job_curves(sweep_dir: Path) -> list[dict]:
    """Each job's val_loss per epoch and its seconds (from its run dir's first file to its
    last), in job order: what benchmarks/pruning_replay.py replays other pruners on."""
    curves = []
    for job in job_dirs(sweep_dir):
        with open(job / rundir.HISTORY, newline="") as f:
            losses = [round(float(r["val_loss"]), 5) for r in csv.DictReader(f)]
        seconds = (job / rundir.METRICS).stat().st_mtime - (job / rundir.MANIFEST).stat().st_mtime
        curves.append({"val_loss": losses, "seconds": round(seconds, 1)})
    return curves


def spread(values: list[float], digits: int) -> dict:
    return {
        "median": round(statistics.median(values), digits),
        "range": f"{min(values):.{digits}f}-{max(values):.{digits}f}",
        "per_seed": [round(v, digits) for v in values],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--trials", type=int, default=20)  # the presets' own budget
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--pruners", nargs="+", default=[BASELINE, "median"])
    args = parser.parse_args()
    rows, curves = [], {}
    with tempfile.TemporaryDirectory(prefix="cvtrain-pruning-") as tmp:
        for i, seed in enumerate(args.seeds):
            order = args.pruners if i % 2 == 0 else args.pruners[::-1]  # A B C, then C B A
            for pruner in order:
                row, jobs = sweep(pruner, seed, args.trials, args.epochs, Path(tmp))
                rows.append(row)
                print(row, flush=True)
                if pruner == BASELINE:
                    curves[seed] = jobs
    by = {(r["pruner"], r["seed"]): r for r in rows}
    unpruned = [by[BASELINE, s]["best_val_loss"] for s in args.seeds]
    summary = {"noise_unpruned_best_across_seeds": f"{max(unpruned) - min(unpruned):.4f}"}
    for pruner in (p for p in args.pruners if p != BASELINE):
        ratios = [by[BASELINE, s]["wall_s"] / by[pruner, s]["wall_s"] for s in args.seeds]
        gaps = [
            by[pruner, s]["best_val_loss"] - by[BASELINE, s]["best_val_loss"] for s in args.seeds
        ]
        summary[f"wall_ratio_none_over_{pruner}"] = spread(ratios, 2)
        summary[f"best_val_loss_{pruner}_minus_none"] = spread(gaps, 4)
    table(rows)
    print(summary)
    setup = (
        f"segmentation_optuna on the real sample, 64 px, {args.trials} trials x "
        f"{args.epochs} epochs, sampler seeds {args.seeds}; pruners {', '.join(args.pruners)} "
        "alternated"
    )
    save("pruning", {"setup": setup, "table": rows, "summary": summary})
    save("pruning_curves", {"setup": f"the unpruned sweeps of: {setup}", "curves": curves})


if __name__ == "__main__":
    main()
