"""The `cvtrain` entry point: compose the config with Hydra, validate it, dispatch on `mode`.

Config and data errors are reported as one line, `cvtrain: error: ...`, before TensorFlow is
imported; TensorFlow is imported only by the mode that needs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from cvtrain import rundir, tf_logging
from cvtrain.config import RunConfig, describe_omegaconf_error, validate
from cvtrain.console import err_console
from cvtrain.errors import ConfigError, UserError
from cvtrain.interrupt import Interrupted, StopNow
from cvtrain.paths import config_dir
from cvtrain.resume import check_compatible, expand_resume_arg, resume_command
from cvtrain.suggest import did_you_mean

log = logging.getLogger("cvtrain")


def fail(message: str) -> None:
    err_console.print(f"cvtrain: error: {message}", markup=False)
    raise SystemExit(2)


def describe_hydra_error(exc: Exception) -> str:
    """Hydra's composition errors span several lines; say the same in one."""
    if isinstance(exc, MissingConfigException) and exc.options and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return unknown_option(group, option, exc.options)
    if isinstance(exc.__cause__, OmegaConfBaseException):
        return describe_omegaconf_error(exc.__cause__)
    if isinstance(exc, OmegaConfBaseException):
        return describe_omegaconf_error(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) or type(exc).__name__


def unknown_option(group: str, option: str, options: list[str]) -> str:
    hint = did_you_mean(option, options)
    if hint:
        return f"unknown {group} '{option}'; {hint} Choose one of: {', '.join(options)}"
    example = f"{group}={options[0]}"
    return f"unknown {group} '{option}'; choose one of: {', '.join(options)} (e.g. {example})"


def check_choices() -> None:
    """Hydra skips a missing option of an `optional` group (experiment=, debug=,
    hparams_search=) without a word; a misspelt one must fail like any other group's."""
    loader = GlobalHydra.instance().config_loader()
    for group, option in HydraConfig.get().runtime.choices.items():
        if option is not None and option not in (options := loader.get_group_options(group)):
            raise ConfigError(unknown_option(group, option, options))


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run dir that holds nothing but Hydra's bookkeeping (a run that never started)."""
    if run_dir.is_dir() and rundir.only_bookkeeping(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        remove_empty_parents(run_dir)


def run_train(cfg: RunConfig, run_dir: Path) -> float:
    from cvtrain.data.sources import load_split

    # Data errors (and bad files, data.verify) surface before TF loads.
    split, dropped = load_split(cfg.data, cfg.task.name, verify_in=run_dir)
    check_compatible(run_dir, cfg, split.train.num_classes)  # a resume that cannot work, too
    if dropped:
        log.warning(
            "skipped %d files that are not images (e.g. %s)", len(dropped), Path(dropped[0]).name
        )
    tf_logging.import_tensorflow()
    from cvtrain.summary import print_train_summary
    from cvtrain.train import train

    result = train(cfg, split, run_dir)
    print_train_summary(result, cfg.task.name)
    return result.best_val_loss


def run_verify_data(cfg: RunConfig, run_dir: Path) -> None:
    """Rescan every file (ignoring the cache); the run dir is kept only for bad_files.txt."""
    from cvtrain.data.sources import load_index
    from cvtrain.data.verify import checked_index

    index, dropped = load_index(cfg.data, cfg.task.name)
    try:
        kept = checked_index(index, dropped, cfg.data.on_bad, run_dir, use_cache=False)
        log.info("verified %d samples: %d usable", len(index) + len(dropped), len(kept))
    finally:
        discard_if_empty(run_dir)


def run_runs(cfg: RunConfig, run_dir: Path) -> None:
    from cvtrain.runs import show

    discard_if_empty(run_dir)  # listing runs is not a run
    show(cfg.path)


def run_on_saved(mode: str) -> Callable[[RunConfig, Path], None]:
    """evaluate/predict/export/explain write into the run they read (or `output=`), so Hydra's
    fresh run dir is removed unless the mode used it (an ensemble's results)."""

    def run(cfg: RunConfig, run_dir: Path) -> None:
        from importlib import import_module

        try:
            tf_logging.import_tensorflow()
            import_module(f"cvtrain.{mode}").run(cfg, HydraConfig.get().overrides.task, run_dir)
        finally:
            discard_if_empty(run_dir)

    return run


def remove_empty_parents(run_dir: Path) -> None:
    """Folders Hydra made for a run dir that is gone (outputs/<date>), below the cwd only."""
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if cwd not in parent.parents:
            return
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            return


# mode -> function(cfg, run_dir) returning the objective (or None); config.MODES lists the names.
MODES: dict[str, Callable[[RunConfig, Path], float | None]] = {
    "train": run_train,
    "evaluate": run_on_saved("evaluate"),
    "predict": run_on_saved("predict"),
    "export": run_on_saved("export"),
    "explain": run_on_saved("explain"),
    "runs": run_runs,
    "verify_data": run_verify_data,
}

ConfigStore.instance().store(name="schema", node=RunConfig)


def dispatch(raw: DictConfig, run_dir: Path) -> float | None:
    check_choices()
    cfg = validate(raw)
    return MODES[cfg.mode](cfg, run_dir)


def task(raw: DictConfig) -> float | None:
    """Hydra's task function. Module-level and undecorated, so the launchers that pickle it
    (joblib, submitit) send it by reference instead of by value with its globals."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            from cvtrain.sweep import run_trial  # a failed job is recorded; the sweep goes on

            return run_trial(lambda: dispatch(raw, run_dir), run_dir)
        return dispatch(raw, run_dir)
    except UserError as exc:
        discard_if_empty(run_dir)
        fail(str(exc))
    except Interrupted as exc:
        err_console.print(
            f"cvtrain: stopped by {exc}; the run is saved up to the last completed epoch. "
            f"Continue it with: {resume_command(run_dir)}",
            markup=False,
        )
        raise SystemExit(exc.exit_code) from None
    except StopNow:
        err_console.print(
            "cvtrain: stopped at once by a second Ctrl-C; the run is saved up to the last "
            f"completed epoch. Continue it with: {resume_command(run_dir)}",
            markup=False,
        )
        raise SystemExit(128 + signal.SIGINT) from None
    return None


hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(task)


def main() -> None:
    tf_logging.configure()
    # Let composition errors reach us as exceptions instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv[1:] = expand_resume_arg(sys.argv[1:])  # resume=<run_dir>: its saved overrides
        hydra_main()
    except UserError as exc:
        fail(str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        fail(describe_hydra_error(exc))


if __name__ == "__main__":
    main()
