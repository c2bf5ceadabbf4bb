"""`cvtrain --help`: Hydra's help template (configs/hydra/help/cvtrain.yaml), rendered here.

Hydra lists the config groups by composing a fresh config repository for every option, which
took about 3 s; the groups are the folders of configs/, so they are listed from the disk. The
config shown is the one the other command-line overrides compose, as with Hydra's own --help.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from cvtrain.paths import config_dir

HELP_FLAGS = ("--help", "-h")


def wants_help(argv: Sequence[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def config_groups() -> str:
    """`group: option, option` per config folder (Hydra's own groups left out, as Hydra does)."""
    root = Path(config_dir())
    lines = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        group = folder.relative_to(root).as_posix()
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options and group.split("/")[0] != "hydra":
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines) + "\n"


def render(argv: Sequence[str]) -> str:
    overrides = [arg for arg in argv if arg not in HELP_FLAGS]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    template = str(cfg.hydra.help.template)  # resolves ${hydra.help.header} and the like
    with open_dict(cfg):
        del cfg["hydra"]
    return template.replace("$APP_CONFIG_GROUPS", config_groups()).replace(
        "$CONFIG", OmegaConf.to_yaml(cfg)
    )
