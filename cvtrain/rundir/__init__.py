"""The run directory: every name in it, and its files written atomically (temp file + rename).

A run dir is Hydra's output dir for one run or sweep job (README: "A run directory").
Names here are relative to it; no other module spells them. Pure Python, no TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Hydra's bookkeeping: the composed config, the command-line overrides and the job's log.
HYDRA = Path(".hydra")
SAVED_CONFIG = HYDRA / "config.yaml"
SAVED_OVERRIDES = HYDRA / "overrides.yaml"
LOG_SUFFIX = ".log"  # <job name>.log (configs/hydra/job_logging/rich.yaml)
LOCK = ".lock"  # held by the process training in the run dir (cvtrain.rundir.lock)

# Training.
CHECKPOINT = Path("checkpoints") / "best.keras"
CHECKPOINT_EPOCH = CHECKPOINT.with_suffix(".json")  # {"epoch": N}: the epoch best.keras holds
BACKUP = Path("backup")  # resumable training state (cvtrain.state.resume)
RESUME_STATE = BACKUP / "state.json"
EPOCH_WEIGHTS = "epoch-*"  # a glob for every epoch_weights() file (and older runs' .weights.h5)
HISTORY = "history.csv"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
CURVES = "curves.png"
PREDICTIONS = "predictions.png"
CONFUSION_MATRIX = "confusion_matrix.png"  # classification: validation set, final model
TENSORBOARD = "tensorboard"  # Keras's callback writes train/ and validation/ below it
TENSORBOARD_VALIDATION = Path(TENSORBOARD) / "validation"
CACHE = Path("cache")  # data.cache=disk
BAD_FILES = "bad_files.txt"  # data.verify: the files that are not usable
FAILURE = "failure.json"  # a sweep job that failed: the error (cvtrain.rundir.sweep)

# Output folders of the modes that read a finished run: inside it, or in Hydra's dir for an
# ensemble (cvtrain.rundir.saved.output_dir).
EVAL = "eval"
PREDICT = "predictions"
EXPORT = "export"
EXPLAIN = "explain"

# A sweep dir (or any path= of mode=runs): the table of its runs.
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def epoch_weights(epoch: int) -> str:
    """The file in BACKUP holding the weights and optimizer after `epoch` (1-based)."""
    return f"epoch-{epoch}.npz"


def is_run_dir(path: Path) -> bool:
    return (path / SAVED_OVERRIDES).is_file()


def only_bookkeeping(path: Path) -> bool:
    """A run dir holding nothing but Hydra's files and the lock: a run that never started."""
    return all(p.name in (HYDRA.name, LOCK) or p.suffix == LOG_SUFFIX for p in path.iterdir())


@contextmanager
def atomic_path(path: Path, suffix: str | None = None):
    """Yield a temp path next to `path`; rename it over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; artefacts are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.\w{8}(?P<suffix>\.\w+)?")  # atomic_path's


def remove_leftovers(run_dir: Path) -> list[Path]:
    """What a killed process left half-written in the folders only cvtrain writes, removed when
    the next training takes the run dir (it holds the lock, so no other process is writing):
    atomic_path's temp files in checkpoints/ and backup/, and the lockfiles of tf.data's disk
    cache (TensorFlow refuses to write a cache whose lockfile exists)."""
    removed = list((run_dir / CACHE).glob("*.lockfile"))
    for folder in (CHECKPOINT.parent, BACKUP):
        for path in (run_dir / folder).glob(".*"):
            match = _TEMP_FILE.fullmatch(path.name)
            if match and path.is_file() and Path(match["name"]).suffix == (match["suffix"] or ""):
                removed.append(path)
    for path in removed:
        path.unlink()
    return removed


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    write_atomic(path, write)
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
