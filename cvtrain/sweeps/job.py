"""What a sweep job learns from its sweep through the environment: the keys the sweep varies
(the job's TensorBoard name shows them) and, when the sweep prunes, the Optuna trial it runs and
the study's pruner (the Keras callback that reports to it is
cvtrain.training.callbacks.ReportToTrial). No TensorFlow.

The sweeper hands each job its trial through environment variables (Hydra's
`hydra.job.env_set`, which every launcher applies around the job), so this works whether the
job runs in the sweeper's process, a joblib worker or a SLURM node sharing the storage.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

if TYPE_CHECKING:
    import optuna

STORAGE, STUDY, TRIAL, PRUNER = (
    "CVTRAIN_STUDY_STORAGE",
    "CVTRAIN_STUDY_NAME",
    "CVTRAIN_TRIAL_NUMBER",
    "CVTRAIN_PRUNER",
)
PRUNERS = ("none", "median", "hyperband")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """median: stop a trial whose best val_loss is worse than the median of earlier trials at
    the same epoch, after 3 trials and from its second epoch on (a first epoch mostly measures
    the random start: replayed on benchmarks/pruning.py's unpruned 12-epoch search, a rule
    starting at epoch 1 pruned its best trial there); hyperband: successive halving over
    epochs."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def open_storage(spec: str) -> str | optuna.storages.BaseStorage:
    """A database URL (sqlite:///study.db) as it is, any other string as a journal file: the
    study of a sweep given no storage lives in its sweep dir, where every job can reach it."""
    if "://" in spec:
        return spec
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(spec))


def job_environment(storage: str, study: str, trial: int, pruner: str) -> dict[str, str]:
    return {STORAGE: storage, STUDY: study, TRIAL: str(trial), PRUNER: pruner}


def trial_of_this_job() -> optuna.trial.Trial | None:
    """The Optuna trial this sweep job runs, if its sweep prunes (None otherwise)."""
    if os.environ.get(PRUNER, "none") == "none" or TRIAL not in os.environ:
        return None
    import optuna

    study = optuna.load_study(
        study_name=os.environ[STUDY],
        storage=open_storage(os.environ[STORAGE]),
        pruner=make_pruner(os.environ[PRUNER]),
    )
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, int(os.environ[TRIAL])
    )
    return optuna.trial.Trial(study, trial_id)


SWEPT = "CVTRAIN_SWEPT"  # the keys a sweep varies, comma-separated, for its jobs' names


def mark_swept(argv: list[str]) -> None:
    """Before a multirun starts: the keys its command line sweeps (Hydra's parser says which)
    in the environment its jobs inherit; cvtrain's Optuna sweeper sets its own per job."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in argv if a[:1] != "-"])
    except OverrideParseException:
        return  # Hydra reports it in its own words
    os.environ[SWEPT] = ",".join(o.get_key_element() for o in parsed if o.is_sweep_override())


def swept_keys() -> list[str]:
    return [key for key in os.environ.get(SWEPT, "").split(",") if key]
