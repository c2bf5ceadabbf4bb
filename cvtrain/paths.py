"""Where cvtrain finds its configs, and where datasets live when `data.root` is not set."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "CVTRAIN_DATA_DIR"


def data_cache_dir() -> Path:
    """$CVTRAIN_DATA_DIR, else $XDG_CACHE_HOME/cvtrain, else ~/.cache/cvtrain."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cvtrain"


def dataset_root(source: str, root: str | None) -> Path:
    return Path(root).expanduser() if root else data_cache_dir() / source


def config_dir() -> str:
    """configs/ inside the installed wheel, else the source checkout's top-level configs/."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs"
    return str(packaged if packaged.is_dir() else here.parent / "configs")


def config_groups() -> list[str]:
    """The top-level config groups (data, model, experiment...): one folder each."""
    return sorted(p.name for p in Path(config_dir()).iterdir() if p.is_dir())
