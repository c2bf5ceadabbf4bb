"""Run-directory files, always written atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKPOINT = Path("checkpoints") / "best.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
CURVES = "curves.png"
PREDICTIONS = "predictions.png"
CONFUSION_MATRIX = "confusion_matrix.png"  # classification: validation set, final model
TENSORBOARD = "tensorboard"
FAILURE = "failure.json"  # a sweep job that failed: the error (cvtrain.sweep)


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


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
