"""A composed config as a RunConfig the CLI can dispatch: schema, registered parts, mode needs.

The mode table and the export formats are read here, above the config package, because the
modes themselves load saved runs through the config checks (cvtrain.rundir.saved).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from omegaconf import DictConfig

from cvtrain.config.checks import check_training, load
from cvtrain.config.schema import RunConfig, check, choice
from cvtrain.data.sources import check_source
from cvtrain.inference.export_formats import FORMATS
from cvtrain.modes import MODES


def validate(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """Raise ConfigError with one readable line for anything wrong, before TensorFlow loads."""
    run = load(cfg)
    check_invocation(run)
    return run


def check_invocation(cfg: RunConfig) -> None:
    """The mode has what it needs, and what it will read fits, before anything is read."""
    choice(cfg.mode, "mode", tuple(MODES))
    choice(cfg.format, "format", tuple(FORMATS))
    mode = MODES[cfg.mode]
    if mode.reads_run:
        check(
            bool(cfg.run),
            "run",
            f"null: mode={cfg.mode} needs run=<run dir> (a training output dir)",
        )
    if mode.one_run:
        check(
            len(cfg.run) == 1, "run", f"{cfg.run}: mode={cfg.mode} takes one run, not an ensemble"
        )
    if mode.reads_input:
        check(bool(cfg.input), "input", f"null: mode={cfg.mode} needs input=<image|folder|glob>")
    if cfg.mode == "train":
        check_training(cfg)
    elif cfg.mode == "verify_data":
        check_source(cfg.data.source, cfg.task.name)  # before anything is read
    if cfg.mode == "export":  # an optional extra the format needs
        export_format = FORMATS[cfg.format]
        missing = [m for m in export_format.needs if find_spec(m) is None]
        check(
            not missing,
            "format",
            f"{cfg.format} needs {', '.join(missing)}: "
            f"pip install 'cvtrain[{export_format.extra}]'",
        )
