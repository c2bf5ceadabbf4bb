"""Resuming a run in its own directory: the saved training state, and what may not change.

The state lives in `<run>/backup/`: `epoch-N.npz` (weights and optimizer, for the last and the
best epoch; cvtrain.state.snapshots) and `state.json` naming them, all written by temp file +
rename, so whatever moment a run is killed at, the state on disk is a completed epoch (the last, or
the one before it while the last is being written), and best.keras is rebuilt from it on
resume. Pure Python: a resume that cannot work is refused before TensorFlow is imported.
"""

from __future__ import annotations

import csv
import math
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cvtrain import rundir
from cvtrain.config.schema import RunConfig, to_dict
from cvtrain.errors import ConfigError
from cvtrain.losses import LOSSES
from cvtrain.models import MODELS


@dataclass
class ResumeState:
    epoch: int  # epochs completed
    weights: str  # file in backup/ holding the weights and optimizer after `epoch`
    best: float = math.inf  # best val_loss so far (what best.keras holds)
    best_epoch: int | None = None
    best_weights: str | None = None  # file in backup/ holding the best epoch (best.keras)
    early_stopping: dict[str, Any] = field(default_factory=dict)  # wait, best
    stopped_early: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)  # see fixed_settings()


def load(run_dir: Path) -> ResumeState | None:
    path = run_dir / rundir.RESUME_STATE
    if not path.is_file():
        return None
    raw = rundir.read_json(path)
    raw["best"] = math.inf if raw.get("best") is None else raw["best"]
    return ResumeState(**raw)


def save(run_dir: Path, state: ResumeState) -> None:
    raw = asdict(state)
    raw["best"] = state.best if math.isfinite(state.best) else None  # JSON has no inf
    rundir.write_json(run_dir / rundir.RESUME_STATE, raw)


def fixed_settings(cfg: RunConfig, num_classes: int) -> dict[str, Any]:
    """Settings the saved weights and optimizer state depend on (flat keys, as overrides):
    the model.* keys the chosen model reads, but not `weights`, which only starts a run; and
    the loss.* keys the loss reads, since the best val_loss and early stopping carried over
    compare values of that loss (another loss's numbers are not better or worse)."""
    tree = to_dict(cfg)
    keys = [k for k in MODELS[cfg.model.name].settings if k != "weights"]
    fixed = {f"model.{k}": tree["model"][k] for k in keys}
    fixed.update({f"loss.{k}": tree["loss"][k] for k in LOSSES[cfg.loss.name].settings})
    fixed.update(
        {
            "task.name": cfg.task.name,
            "data.image_size": list(cfg.data.image_size),
            "optimizer.name": cfg.optimizer.name,
            "classes": num_classes,
        }
    )
    return fixed


def check_compatible(run_dir: Path, cfg: RunConfig, num_classes: int) -> ResumeState | None:
    """The run's saved state, if any; ConfigError if this config cannot continue it."""
    state = load(run_dir)
    if state is None:
        return None
    now = fixed_settings(cfg, num_classes)
    # Older runs locked every model.* key: compare only those this model still reads.
    changed = [k for k in state.fixed if k in now and state.fixed[k] != now[k]]
    if changed:
        what = ", ".join(f"{k}={state.fixed[k]} (now {now[k]})" for k in changed)
        raise ConfigError(
            f"{run_dir} was trained with {what}; a resumed run keeps its task, model, image "
            "size, optimizer, loss and classes. Drop those overrides to continue it, or start a "
            "new run (without hydra.run.dir/resume=)"
        )
    return state


def trim_history(path: Path, epochs: int) -> None:
    """Keep the first `epochs` rows of history.csv: an epoch logged after the last saved state
    (a kill between the two) is run again, and must not appear twice."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    epoch_col = header.index("epoch") if "epoch" in header else None
    keep = [r for r in body if epoch_col is None or int(r[epoch_col]) < epochs][:epochs]
    if len(keep) == len(body):
        return
    if not keep:
        path.unlink()  # CSVLogger writes a fresh header
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *keep])

    rundir.write_atomic(path, write)


def resume_command(run_dir: Path) -> str:
    return f"cvtrain resume={shlex.quote(str(run_dir))}"


def _key(override: str) -> str | None:
    if "=" not in override or override.startswith("-"):
        return None
    return override.split("=", 1)[0].lstrip("+~")


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w./@:-]+", value) else "'" + value.replace("'", "\\'") + "'"


def expand_resume_arg(argv: list[str]) -> list[str]:
    """`resume=<run_dir> [overrides]` -> the run's saved overrides, the new ones (they win)
    and hydra.run.dir=<run_dir>; any other argv is returned as it is."""
    found = [a for a in argv if a.startswith("resume=")]
    if not found:
        return argv
    run_dir = Path(found[-1].split("=", 1)[1]).expanduser().resolve()
    saved_path = run_dir / rundir.SAVED_OVERRIDES
    if not rundir.is_run_dir(run_dir):
        raise ConfigError(
            f"resume={run_dir}: not a cvtrain run dir (no {rundir.SAVED_OVERRIDES}); "
            "pass the folder a run printed as its run dir"
        )
    rest = [a for a in argv if not a.startswith("resume=")]
    new_keys = {_key(a) for a in rest}
    saved = [str(o) for o in OmegaConf.load(saved_path)]
    kept = [o for o in saved if _key(o) not in new_keys]
    return [*kept, *rest, f"hydra.run.dir={_quote(str(run_dir))}"]
