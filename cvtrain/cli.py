"""The `cvtrain` entry point: compose the config with Hydra, validate it, dispatch on `mode`.

Config and data errors are reported as one line, `cvtrain: error: ...`, before TensorFlow is
imported; TensorFlow is imported only by the mode that needs it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from cvtrain.config import RunConfig, describe_omegaconf_error, validate
from cvtrain.console import err_console
from cvtrain.errors import UserError

log = logging.getLogger("cvtrain")


def config_dir() -> str:
    """configs/ inside the installed wheel, else the source checkout's top-level configs/."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs"
    return str(packaged if packaged.is_dir() else here.parent / "configs")


def fail(message: str) -> None:
    err_console.print(f"cvtrain: error: {message}", markup=False)
    raise SystemExit(2)


def describe_hydra_error(exc: Exception) -> str:
    """Hydra's composition errors span several lines; say the same in one."""
    if isinstance(exc, MissingConfigException) and exc.options and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return (
            f"unknown {group} '{option}'; choose one of: {', '.join(exc.options)} "
            f"(e.g. {group}={exc.options[0]})"
        )
    if isinstance(exc.__cause__, OmegaConfBaseException):
        return describe_omegaconf_error(exc.__cause__)
    if isinstance(exc, OmegaConfBaseException):
        return describe_omegaconf_error(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) or type(exc).__name__


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run dir that holds nothing but Hydra's bookkeeping (a run that never started)."""
    if run_dir.is_dir() and all(
        p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()
    ):
        shutil.rmtree(run_dir, ignore_errors=True)


def run_train(cfg: RunConfig, run_dir: Path) -> float:
    from cvtrain.data.sources import load_split

    split, dropped = load_split(cfg.data, cfg.task.name)  # data errors surface before TF loads
    if dropped:
        log.warning(
            "skipped %d files that are not images (e.g. %s)", len(dropped), Path(dropped[0]).name
        )
    from cvtrain.summary import print_train_summary
    from cvtrain.train import train

    result = train(cfg, split, run_dir)
    print_train_summary(result, cfg.task.name)
    return result.best_val_loss


# mode -> function(cfg, run_dir) returning the objective (or None); config.MODES lists the names.
MODES: dict[str, Callable[[RunConfig, Path], float | None]] = {
    "train": run_train,
}

ConfigStore.instance().store(name="schema", node=RunConfig)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(raw: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg = validate(raw)
        return MODES[cfg.mode](cfg, run_dir)
    except UserError as exc:
        discard_if_empty(run_dir)
        fail(str(exc))
    return None


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Let composition errors reach us as exceptions instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        fail(describe_hydra_error(exc))


if __name__ == "__main__":
    main()
