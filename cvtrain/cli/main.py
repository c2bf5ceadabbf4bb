"""The `cvtrain` entry point: compose the config with Hydra, validate it, dispatch on `mode`.

Config and data errors are reported as one line, `cvtrain: error: ...`, before TensorFlow is
imported; TensorFlow is imported only by the mode that needs it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from cvtrain import rundir
from cvtrain.cli import help_page, tf_logging
from cvtrain.cli.validate import validate
from cvtrain.config.schema import describe_omegaconf_error, hydra_schema
from cvtrain.config.suggest import did_you_mean
from cvtrain.console import console, err_console
from cvtrain.errors import ConfigError, UserError
from cvtrain.modes import MODES
from cvtrain.paths import config_dir
from cvtrain.rundir.sweep import run_trial
from cvtrain.state.resume import expand_resume_arg, resume_command
from cvtrain.sweeps.job import mark_swept
from cvtrain.training.cluster import worker_rank
from cvtrain.training.interrupt import (
    Interrupted,
    StopNow,
    interrupted_while_starting,
    on_startup_sigint,
)

log = logging.getLogger("cvtrain")


# Faults of the disk, not of cvtrain or the config: one line each, with the fix.
STORAGE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
}


def storage_error(exc: BaseException | None) -> str | None:
    """The one line for a disk fault: `exc`, or the error behind it (Hydra wraps the one of
    its log file); None for anything else, a bug worth its traceback."""
    while exc is not None and not (isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS):
        exc = exc.__cause__ or exc.__context__
    if exc is None:
        return None
    return (
        f"cannot write {exc.filename or 'a file'}: {STORAGE_ERRORS[exc.errno]}; free space or "
        "give a writable folder (hydra.run.dir=, output=). A run keeps what it had written "
        "(resume= continues from its last saved epoch)"
    )


def fail_on_storage_error(exc: BaseException) -> None:
    """One line for a disk fault; anything else goes on up with its traceback."""
    message = storage_error(exc)
    if message is None:
        raise exc
    fail(message)


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
    """Remove what Hydra wrote for a run that never started (.hydra/ and the job's log), and
    the folder if that leaves it empty: a folder that held the user's files stays."""
    if not (run_dir.is_dir() and rundir.only_bookkeeping(run_dir)):
        return
    shutil.rmtree(run_dir / rundir.HYDRA, ignore_errors=True)
    for name in (f"{HydraConfig.get().job.name}{rundir.LOG_SUFFIX}", rundir.LOCK):
        (run_dir / name).unlink(missing_ok=True)
    try:
        run_dir.rmdir()  # only succeeds when empty
    except OSError:
        return
    remove_empty_parents(run_dir)


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


ConfigStore.instance().store(name="schema", node=hydra_schema())


def dispatch(raw: DictConfig, run_dir: Path) -> float | None:
    """Run the chosen mode; Hydra's fresh run dir stays only if the mode keeps or wrote to it."""
    check_choices()
    cfg = validate(raw)
    mode = MODES[cfg.mode]
    try:
        result = mode.function()(cfg, HydraConfig.get().overrides.task, run_dir)
    finally:
        if not mode.keeps_run_dir:
            discard_if_empty(run_dir)
    return result if isinstance(result, float) else None  # the objective sweepers minimise


def stopped(how: str, exit_code: int, run_dir: Path) -> None:
    err_console.print(
        f"cvtrain: stopped {how}; the run is saved up to the last completed epoch. "
        f"Continue it with: {resume_command(run_dir)}",
        markup=False,
    )
    raise SystemExit(exit_code) from None


def task(raw: DictConfig) -> float | None:
    """Hydra's task function. Module-level and undecorated, so the launchers that pickle it
    (joblib, submitit) send it by reference instead of by value with its globals."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # a failed job is recorded; it goes on
            return run_trial(lambda: dispatch(raw, run_dir), run_dir)
        return dispatch(raw, run_dir)
    except UserError as exc:
        discard_if_empty(run_dir)
        fail(str(exc))
    except Interrupted as exc:
        stopped(f"by {exc}", exc.exit_code, run_dir)
    except StopNow:
        stopped("at once by a second Ctrl-C", 128 + signal.SIGINT, run_dir)
    except OSError as exc:
        fail_on_storage_error(exc)
    return None


hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(task)


MULTIRUN = {"-m", "--multirun"}


def register_sweeper() -> None:
    """Hydra finds plugins by scanning the installed `hydra_plugins` namespace, where an
    editable install (`make install`) does not show cvtrain's sweeper: register it by hand."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.cvtrain_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)


def given(argv: list[str], key: str) -> str | None:
    """The value `key=` has on the command line (the last one wins, as in Hydra)."""
    found = [a.split("=", 1)[1].strip("'\"") for a in argv if a.startswith(f"{key}=")]
    return found[-1] if found else None


def explicit_run_dir(argv: list[str]) -> Path | None:
    """The run dir given on the command line (hydra.run.dir=, as resume= expands to)."""
    run_dir = given(argv, "hydra.run.dir")
    return Path(run_dir).expanduser() if run_dir else None


def needs_no_run_dir(argv: list[str]) -> bool:
    """evaluate, predict, export and explain write into the run or `output=` (only an
    ensemble without `output=` writes into Hydra's run dir): their bookkeeping (.hydra/, the
    log) goes to a scratch folder in the system's temp dir instead of a fresh
    outputs/<date>/<time>, removed when they end, so not even a SIGKILL leaves one behind."""
    mode = MODES.get(given(argv, "mode") or "")
    if mode is None or not mode.reads_run or given(argv, "hydra.run.dir") is not None:
        return False
    if MULTIRUN & set(argv):
        return False
    ensemble = (given(argv, "run") or "").startswith("[") and not mode.one_run
    return not ensemble or given(argv, "output") is not None


@contextmanager
def hydra_args(argv: list[str]) -> Iterator[list[str]]:
    """`argv` for Hydra, with a scratch run dir where it needs none (removed at the end; a
    Hydra that failed before its job leaves it empty)."""
    if not needs_no_run_dir(argv):
        yield argv
        return
    scratch = tempfile.mkdtemp(prefix="cvtrain-")
    try:
        yield [*argv, f"hydra.run.dir={scratch}"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _history_stamp(run_dir: Path) -> tuple[int, int] | None:
    path = run_dir / rundir.HISTORY
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None


@contextmanager
def saved_config_kept(argv: list[str]) -> Iterator[None]:
    """Hydra rewrites an existing run dir's .hydra/ before cvtrain checks anything; a command
    that fails without training an epoch there (a refused resume=, a config error) puts the
    run's saved config and overrides back as they were."""
    run_dir = explicit_run_dir(argv)
    if run_dir is None or not rundir.is_run_dir(run_dir):
        yield
        return
    saved = {path: path.read_bytes() for path in (run_dir / rundir.HYDRA).glob("*.yaml")}
    history = _history_stamp(run_dir)
    try:
        yield
    except SystemExit as exc:
        if exc.code and _history_stamp(run_dir) == history:
            for path, data in saved.items():
                rundir.write_atomic(path, lambda tmp, data=data: tmp.write_bytes(data))
        raise


def worker_overrides() -> list[str]:
    """A worker other than the chief leaves the shared run dir's .hydra/ and cvtrain.log to the
    chief (a resume reads .hydra/overrides.yaml) and logs to cvtrain-worker<N>.log."""
    rank = worker_rank()
    return ["hydra.output_subdir=null", f"hydra.job.name=cvtrain-worker{rank}"] if rank else []


def main() -> None:
    signal.signal(signal.SIGINT, on_startup_sigint)
    tf_logging.configure()
    tf_logging.quiet_tensorflow_import()
    # Let composition errors reach us as exceptions instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    logging.raiseExceptions = False  # a log line that cannot be written is no traceback
    try:
        # resume=<run_dir>: its saved overrides
        sys.argv[1:] = [*expand_resume_arg(sys.argv[1:]), *worker_overrides()]
        if help_page.wants_help(sys.argv[1:]):
            console.print(
                help_page.render(sys.argv[1:]), markup=False, highlight=False, soft_wrap=True
            )
            return
        if MULTIRUN & set(sys.argv[1:]):
            register_sweeper()
            mark_swept(sys.argv[1:])
        with saved_config_kept(sys.argv[1:]), hydra_args(sys.argv[1:]) as args:
            sys.argv[1:] = args
            hydra_main()
    except UserError as exc:
        fail(str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        fail(describe_hydra_error(exc))
    except (OSError, ValueError) as exc:  # Hydra's own writes (.hydra/, the log) fail here
        fail_on_storage_error(exc)
    except KeyboardInterrupt:  # before training trapped the signal: nothing to save yet
        stopped_while_starting()
    except Exception:
        if not interrupted_while_starting():
            raise
        stopped_while_starting()  # the error is the interrupted start-up's


def stopped_while_starting() -> None:
    err_console.print("cvtrain: stopped by Ctrl-C while starting", markup=False)
    raise SystemExit(128 + signal.SIGINT) from None


if __name__ == "__main__":
    main()
