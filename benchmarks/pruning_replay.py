"""Which pruner would save how much: other pruning rules replayed on the recorded curves of
benchmarks/pruning.py's unpruned searches (results/pruning_curves.json), in seconds, not hours.

Each seed's 20 jobs are fed in their order to a fresh Optuna study with the pruner under test:
every epoch the job's best val_loss so far, as cvtrain's ReportToTrial does, until the pruner
stops it. A job stopped after k of its E epochs is charged `fixed + (its seconds - fixed) * k
/ E` (fixed: what a job pays before and after its epochs). Reported per seed: the wall-time
ratio (unpruned seconds / replayed) and the best val_loss of the jobs that ran to the end.

A replay cannot show the sampler's feedback (TPE proposes other trials after a pruning), so it
ranks rules; the measured figures are pruning.py's. Only the pruner differs between the rows.

    python benchmarks/pruning_replay.py [--fixed 5.0]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import optuna
from harness import RESULTS, save, table

from cvtrain.sweeps.job import make_pruner

P = optuna.pruners
RULES = {  # name -> a fresh pruner
    "cvtrain median (from epoch 2)": lambda: make_pruner("median"),
    "median from epoch 1": lambda: P.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    "median from epoch 3": lambda: P.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
    "25th percentile from epoch 2": lambda: P.PercentilePruner(25, 3, 2),
    "successive halving, min 1 epoch": lambda: P.SuccessiveHalvingPruner(min_resource=1),
    "successive halving, min 2 epochs": lambda: P.SuccessiveHalvingPruner(min_resource=2),
    "successive halving, min 1, rate 2": lambda: P.SuccessiveHalvingPruner(1, reduction_factor=2),
    "cvtrain hyperband": lambda: make_pruner("hyperband"),
    "hyperband min 2 epochs": lambda: P.HyperbandPruner(min_resource=2),
}


def replay(jobs: list[dict], pruner: optuna.pruners.BasePruner, fixed: float) -> tuple:
    study = optuna.create_study(study_name="segmentation", pruner=pruner)
    wall, best = 0.0, math.inf
    for job in jobs:
        losses, trial, so_far = job["val_loss"], study.ask(), math.inf
        for epoch, loss in enumerate(losses, 1):
            so_far = min(so_far, loss)
            trial.report(so_far, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, so_far)
            best = min(best, so_far)
        wall += fixed + (job["seconds"] - fixed) * epoch / len(losses)
    return sum(j["seconds"] for j in jobs) / wall, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", type=float, default=5.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    curves = json.loads((RESULTS / "pruning_curves.json").read_text())["curves"]
    unpruned = {seed: min(min(j["val_loss"]) for j in jobs) for seed, jobs in curves.items()}
    rows = []
    for name, make in RULES.items():
        ratios, gaps = [], []
        for seed, jobs in curves.items():
            ratio, best = replay(jobs, make(), args.fixed)
            ratios.append(ratio)
            gaps.append(best - unpruned[seed])
        rows.append(
            {
                "pruner": name,
                "wall ratio per seed": ", ".join(f"{r:.2f}" for r in ratios),
                "median ratio": round(statistics.median(ratios), 2),
                "best minus unpruned per seed": ", ".join(f"{g:+.4f}" for g in gaps),
            }
        )
    table(rows)
    noise = max(unpruned.values()) - min(unpruned.values())
    setup = (
        f"pruners replayed on results/pruning_curves.json (seeds {', '.join(curves)}), "
        f"fixed {args.fixed} s a job; the unpruned best moves {noise:.4f} between seeds"
    )
    save("pruning_replay", {"setup": setup, "table": rows})


if __name__ == "__main__":
    main()
