"""Multirun support: a failed job never ends the sweep, and every sweep ends with a summary.

`run_trial` wraps each job's work: an exception or a non-finite objective is written to the
job dir as failure.json and reported to the sweeper as +inf (Optuna aborts a study on NaN).
`SweepSummary` is a Hydra callback (configs/config.yaml, hydra.callbacks) that, when the
multirun ends, prints the jobs sorted by best val_loss and writes summary.csv and summary.md
into the sweep dir.
"""

from __future__ import annotations

import logging
import math
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cvtrain import rundir
from cvtrain.console import console
from cvtrain.errors import UserError
from cvtrain.rundir import compare
from cvtrain.training.interrupt import Interrupted

log = logging.getLogger(__name__)

NON_FINITE = "val_loss was never finite (NaN or inf loss); try a lower optimizer.lr"


def record_failure(run_dir: Path, error: str, exc: BaseException | None = None) -> float:
    """failure.json in the job dir (with the traceback of an unexpected crash); returns +inf."""
    log.error("job %s failed: %s", run_dir.name, error)
    record: dict[str, Any] = {"status": compare.FAILED, "error": error}
    if exc is not None:
        record["traceback"] = "".join(traceback.format_exception(exc))
    rundir.write_json(run_dir / rundir.FAILURE, record)
    return math.inf


def run_trial(job: Callable[[], float | None], run_dir: Path) -> float | None:
    """Run one multirun job; any failure is recorded in its dir and becomes objective +inf."""
    # Parallel launchers put several jobs on one GPU: each takes memory as it needs it instead
    # of all of it. Read when TensorFlow first touches the GPU, i.e. after this line.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    try:
        objective = job()
    except Interrupted:
        raise  # Ctrl-C or SIGTERM (SLURM preemption) stops the sweep, not just this job
    except UserError as exc:
        return record_failure(run_dir, str(exc))
    except Exception as exc:  # any crash of one job (NaN abort, OOM, a bug) must not end the sweep
        return record_failure(run_dir, f"{type(exc).__name__}: {exc}", exc)
    if objective is not None and not math.isfinite(objective):
        return record_failure(run_dir, NON_FINITE)
    return objective


def summarize(sweep_dir: Path) -> list[compare.Run]:
    """Print the sweep's jobs sorted by objective and write summary.csv/summary.md."""
    jobs = compare.sorted_runs(compare.find_runs(sweep_dir))
    if not jobs:
        return jobs
    csv_path, md_path = compare.write_summary(jobs, sweep_dir)
    done = sum(j.status == compare.COMPLETED for j in jobs)
    pruned = sum(j.status == compare.PRUNED for j in jobs)
    also = f", {pruned} pruned" if pruned else ""
    title = f"Sweep finished: {done} of {len(jobs)} jobs completed{also}, best val_loss first"
    console.print(compare.table(jobs, sweep_dir, title))
    console.print(f"summary: {csv_path}, {md_path}\ntensorboard --logdir {sweep_dir}")
    return jobs


class SweepSummary(Callback):
    """Hydra callback: summarize the sweep dir when a multirun ends (on the launching machine)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarize(Path(config.hydra.sweep.dir))
