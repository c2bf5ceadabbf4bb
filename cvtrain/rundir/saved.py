"""A finished run as evaluate, predict, export and explain load it (`run=`, one or several).

Loading a run's config is pure Python, so a wrong `run=` or a bad override is reported before
TensorFlow is imported; Keras is imported only by SavedRun.load_model.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cvtrain import rundir
from cvtrain.config.checks import load
from cvtrain.config.schema import RunConfig, to_dict
from cvtrain.errors import ConfigError, DataError
from cvtrain.tasks.specs import SPECS

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

# Settings a user may change when reusing a run: which data, split and batch size to use.
OVERRIDABLE = ("data",)
# The keys of the evaluate/predict/export/explain invocation itself, never taken from the saved run.
INVOCATION = ("mode", "run", "input", "output", "format", "eval", "predict", "explain")


@dataclass(frozen=True)
class SavedRun:
    path: Path
    config: RunConfig  # the run's own config, with the user's data overrides

    @property
    def checkpoint(self) -> Path:
        return self.path / rundir.CHECKPOINT

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The classes the run was trained on, from its manifest (None if it has none)."""
        manifest = self.path / rundir.MANIFEST
        if not manifest.is_file():
            return None
        return tuple(rundir.read_json(manifest).get("dataset", {}).get("classes") or ()) or None

    def load_model(self) -> keras.Model:
        import keras

        return keras.saving.load_model(self.checkpoint, compile=False, safe_mode=True)


def overridden_keys(overrides: Sequence[str]) -> list[str]:
    """Command-line keys (`data.root=...`, `data=...`) that reach into OVERRIDABLE sections."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    keys = [o.key_or_group for o in parsed]
    return [k for k in keys if k.split(".")[0] in OVERRIDABLE]


def load_run(path: Path, cfg: RunConfig, overrides: Sequence[str]) -> SavedRun:
    """The run's saved config with the user's data overrides and this invocation's own keys."""
    if not (path / rundir.SAVED_CONFIG).is_file():
        raise ConfigError(
            f"run={path} is not a cvtrain run dir (no {rundir.SAVED_CONFIG}); "
            "pass a training output dir such as outputs/<date>/<time>"
        )
    if not (path / rundir.CHECKPOINT).is_file():
        raise DataError(
            f"run={path} has no {rundir.CHECKPOINT}: the run never finished an epoch; "
            "train it longer or pick another run"
        )
    check_checkpoint_epoch(path)
    if not zipfile.is_zipfile(path / rundir.CHECKPOINT):  # a .keras file is a zip archive
        raise DataError(
            f"run={path}: {rundir.CHECKPOINT} is not a Keras model file (cut short or "
            f"overwritten); `cvtrain resume={path}` rebuilds it from the run's saved state"
        )
    try:
        saved = OmegaConf.load(path / rundir.SAVED_CONFIG)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"run={path}: {rundir.SAVED_CONFIG} cannot be read ({first}); fix the file by hand "
            "or pick another run"
        ) from None
    current = OmegaConf.create(to_dict(cfg))
    for key in [*overridden_keys(overrides), *INVOCATION]:
        OmegaConf.update(saved, key, OmegaConf.select(current, key), merge=False)
    return SavedRun(path, load(saved, saved=True))


def check_checkpoint_epoch(path: Path) -> None:
    """best.keras is written at most once a minute: after a kill it can hold an earlier epoch
    than the run's best. Refused rather than used silently (runs before best.json: unchecked)."""
    holds, state = path / rundir.CHECKPOINT_EPOCH, path / rundir.RESUME_STATE
    if not (holds.is_file() and state.is_file()):
        return
    try:
        epoch, saved = rundir.read_json(holds).get("epoch"), rundir.read_json(state)
    except ValueError:  # a damaged file: resume= reports it; the checkpoint is still usable
        return
    best, done = saved.get("best_epoch"), saved.get("epoch")
    if epoch != best:
        raise DataError(
            f"run={path}: {rundir.CHECKPOINT} holds epoch {epoch} but the run's best epoch is "
            f"{best} (it was stopped before writing it); `cvtrain resume={path} "
            f"trainer.epochs={done}` rebuilds it from the saved state without training"
        )


def load_runs(cfg: RunConfig, overrides: Sequence[str] = ()) -> list[SavedRun]:
    """`run=` as SavedRuns; an ensemble's members must solve the same task on the same inputs."""
    runs = [load_run(Path(p).expanduser(), cfg, overrides) for p in cfg.run]
    first = runs[0].config
    if len(runs) > 1 and not SPECS[first.task.name].ensembles:
        raise ConfigError(
            f"run=[...]: {first.task.name} runs do not form an ensemble (averaging detectors' "
            "outputs merges no boxes); pass one run"
        )
    for other in runs[1:]:
        if other.config.task.name != first.task.name:
            raise ConfigError(
                f"run={other.path} is a {other.config.task.name} run but run={runs[0].path} is "
                f"{first.task.name}; an ensemble needs runs of one task"
            )
        if other.config.data != first.data:
            log.warning(
                "ensemble members were trained with different data settings; using those of %s",
                runs[0].path,
            )
    return runs


def output_dir(cfg: RunConfig, runs: list[SavedRun], hydra_dir: Path, name: str) -> Path:
    """`output=`, else `<run>/<name>` for one run, else `<hydra run dir>/<name>` for an ensemble."""
    if cfg.output:
        return Path(cfg.output).expanduser()
    return (runs[0].path if len(runs) == 1 else hydra_dir) / name
