"""Every `mode=` in one table: where it lives and what it needs from the command line.

Each mode is `run(cfg, overrides, run_dir)`, imported only when chosen; the CLI hands a float
result (train's best val_loss) to Hydra as the objective sweepers minimise. Config validation
reads the flags below, so a missing `run=` or `input=` is reported before anything is imported;
the CLI reads the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cvtrain.registry import resolve


@dataclass(frozen=True)
class Mode:
    target: str  # "module:function"
    reads_run: bool = False  # run=<run dir> (or [dir1,dir2]: an ensemble) is required
    one_run: bool = False  # an ensemble makes no sense for it
    reads_input: bool = False  # input=<image|folder|glob> is required
    keeps_run_dir: bool = False  # train keeps Hydra's run dir; the others only if they wrote

    def function(self) -> Callable[..., Any]:
        return resolve(self.target)


MODES: dict[str, Mode] = {
    "train": Mode("cvtrain.modes.train:run", keeps_run_dir=True),
    "evaluate": Mode("cvtrain.modes.evaluate:run", reads_run=True),
    "predict": Mode("cvtrain.modes.predict:run", reads_run=True, reads_input=True),
    "export": Mode("cvtrain.modes.export:run", reads_run=True, one_run=True),
    "explain": Mode("cvtrain.modes.explain:run", reads_run=True, one_run=True, reads_input=True),
    "runs": Mode("cvtrain.modes.runs:run"),
    "verify_data": Mode("cvtrain.modes.verify_data:run"),
}
