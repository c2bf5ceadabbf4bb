"""mode=verify_data: rescan every file (ignoring the scan cache); bad_files.txt in the run dir."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cvtrain.config.schema import RunConfig
from cvtrain.data.sources import load_index
from cvtrain.data.verify import checked_index

log = logging.getLogger(__name__)


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> None:
    index, dropped = load_index(cfg.data, cfg.task.name)
    kept = checked_index(index, dropped, cfg.data.on_bad, run_dir, use_cache=False)
    log.info("verified %d samples: %d usable", len(index) + len(dropped), len(kept))
