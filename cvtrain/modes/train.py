"""mode=train: data checks (pure Python), then TensorFlow, the training and its summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cvtrain import rundir
from cvtrain.config.schema import RunConfig
from cvtrain.data.sources import load_split
from cvtrain.data.verify import checked_split
from cvtrain.losses import class_weights
from cvtrain.rundir import lock
from cvtrain.state.resume import check_compatible
from cvtrain.training.cluster import worker_rank

log = logging.getLogger(__name__)


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> float:
    if worker_rank():  # workers besides the chief only read the run dir
        return train_here(cfg, run_dir)
    with lock.hold(run_dir):  # one process at a time in a run dir
        rundir.remove_leftovers(run_dir)
        return train_here(cfg, run_dir)


def train_here(cfg: RunConfig, run_dir: Path) -> float:
    # Data errors surface before TF loads; an uncached scan for bad files (data.verify) runs
    # beside the first epoch.
    split, dropped = load_split(cfg.data, cfg.task.name)
    class_weights.check(cfg.loss, split.train.class_names)
    scan = None
    if cfg.data.verify:
        split, scan = checked_split(split, dropped, cfg.data, run_dir, defer=True)
    # The one resume check: a resume that cannot work is refused before TF loads, too.
    labels = split.train
    state = check_compatible(run_dir, cfg, labels.class_names, labels.mask_values)
    if dropped:
        log.warning(
            "skipped %d files that are not images (e.g. %s)", len(dropped), Path(dropped[0]).name
        )
    from cvtrain.training.callbacks import AtFirstEpochEnd
    from cvtrain.training.summary import print_train_summary
    from cvtrain.training.trainer import train

    result = train(cfg, split, run_dir, state, [AtFirstEpochEnd(scan.finish)] if scan else [])
    print_train_summary(result, cfg.task.name)
    return result.best_val_loss
