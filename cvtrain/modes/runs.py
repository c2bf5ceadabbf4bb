"""mode=runs: the comparison table of past runs and sweeps under `path=` (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvtrain.config.schema import RunConfig
from cvtrain.rundir.compare import show


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> None:
    show(cfg.path)
