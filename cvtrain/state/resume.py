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
import zipfile
from collections.abc import Sequence
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
    try:
        raw = rundir.read_json(path)
        raw["best"] = math.inf if raw.get("best") is None else raw["best"]
        return ResumeState(**raw)
    except (ValueError, TypeError, AttributeError) as exc:  # truncated, or not a state at all
        raise ConfigError(
            f"{path} is damaged ({type(exc).__name__}), so the run cannot be continued; "
            f"start a new run in another folder, or use its best model with run={run_dir}"
        ) from None


def save(run_dir: Path, state: ResumeState) -> None:
    raw = asdict(state)
    raw["best"] = state.best if math.isfinite(state.best) else None  # JSON has no inf
    rundir.write_json(run_dir / rundir.RESUME_STATE, raw)


def fixed_settings(
    cfg: RunConfig, classes: Sequence[str], mask_values: Sequence[int] = ()
) -> dict[str, Any]:
    """Settings the saved weights and optimizer state depend on (flat keys, as overrides):
    the model.* keys the chosen model reads, but not `weights`, which only starts a run; the
    loss.* keys the loss reads, since the best val_loss and early stopping carried over
    compare values of that loss (another loss's numbers are not better or worse); and the
    classes in id order with the mask value of each, since the output units mean them."""
    tree = to_dict(cfg)
    keys = [k for k in MODELS[cfg.model.name].settings if k != "weights"]
    fixed = {f"model.{k}": tree["model"][k] for k in keys}
    fixed.update({f"loss.{k}": tree["loss"][k] for k in LOSSES[cfg.loss.name].settings})
    fixed.update(
        {
            "task.name": cfg.task.name,
            "data.image_size": list(cfg.data.image_size),
            "optimizer.name": cfg.optimizer.name,
            "classes": list(classes),
            "data.mask_values": list(mask_values),
        }
    )
    return fixed


def check_compatible(
    run_dir: Path, cfg: RunConfig, classes: Sequence[str], mask_values: Sequence[int] = ()
) -> ResumeState | None:
    """The run's saved state, if any; ConfigError if this config cannot continue it, or if
    the folder holds a trained run whose state is gone (training would overwrite it)."""
    state = load(run_dir)
    if state is None:
        refuse_without_state(run_dir)
        return None
    check_state_files(run_dir, state)
    now = fixed_settings(cfg, classes, mask_values)
    # Older runs locked every model.* key: compare only those this model still reads.
    changed = [k for k in state.fixed if k in now and _differs(state.fixed[k], now[k])]
    if changed:
        what = ", ".join(f"{k}={state.fixed[k]} (now {now[k]})" for k in changed)
        raise ConfigError(
            f"{run_dir} was trained with {what}; a resumed run keeps its task, model, image "
            "size, optimizer, loss and classes. Drop those overrides to continue it, or start a "
            "new run (without hydra.run.dir/resume=)"
        )
    return state


def check_state_files(run_dir: Path, state: ResumeState) -> None:
    """The weight files state.json names are there and whole (an .npz is a zip archive: one cut
    short has no central directory), checked before TensorFlow loads."""
    for name in dict.fromkeys(n for n in (state.weights, state.best_weights) if n):
        path = run_dir / rundir.BACKUP / name
        try:
            if path.suffix == ".npz":
                zipfile.ZipFile(path).close()
            elif not path.is_file():  # older runs' Keras .weights.h5
                raise FileNotFoundError(path)
        except (OSError, zipfile.BadZipFile) as exc:
            why = "is missing" if isinstance(exc, FileNotFoundError) else "is damaged"
            raise ConfigError(
                f"{path} {why}, so the run cannot be continued from its state; start a new run "
                f"in another folder, or use its best model with run={run_dir}"
            ) from None


def _differs(saved: Any, now: Any) -> bool:
    if isinstance(saved, int) and isinstance(now, list):  # older states count the classes
        return saved != len(now)
    return saved != now


def refuse_without_state(run_dir: Path) -> None:
    """A folder with trained epochs but no state.json (backup/ deleted to save space) cannot
    be continued, and a new training would overwrite its history and best model."""
    history = run_dir / rundir.HISTORY
    trained = [rundir.HISTORY] if history.is_file() and _has_rows(history) else []
    if (run_dir / rundir.CHECKPOINT).is_file():
        trained.append(str(rundir.CHECKPOINT))
    if trained:
        raise ConfigError(
            f"{run_dir} holds a trained run ({', '.join(trained)}) but not its training state "
            f"({rundir.RESUME_STATE}), so it cannot be continued and nothing was changed; "
            "train into a new folder (without hydra.run.dir/resume=), or use its best model "
            f"with mode=evaluate|predict|export run={run_dir}"
        )


def _has_rows(path: Path) -> bool:
    with open(path, newline="") as f:
        return len(list(csv.reader(f))) > 1


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


def override_key(override: str) -> str | None:
    """The key an override sets (`+model.width=0.5` -> model.width); None for a flag."""
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
    new_keys = {override_key(a) for a in rest}
    saved = [str(o) for o in OmegaConf.load(saved_path)]
    kept = [o for o in saved if override_key(o) not in new_keys]
    return [*kept, *rest, f"hydra.run.dir={_quote(str(run_dir))}"]
