"""cvtrain's Hydra sweeper on Optuna 5: `cvtrain -m hparams_search=<preset>`.

Each batch of `n_jobs` trials is asked from the study, launched through Hydra's launcher (so
joblib and SLURM work as for a grid) and told its result: the job's best val_loss, pruned when
the job's run dir says so (cvtrain.training.callbacks.ReportToTrial stopped it), +inf when it
failed (the job records why; a failure never ends the sweep).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from cvtrain import rundir
from cvtrain.config.schema import choice
from cvtrain.rundir import compare
from cvtrain.sweeps.job import PRUNERS, SWEPT, job_environment, make_pruner, open_storage

if TYPE_CHECKING:  # imported when a sweep starts: Hydra's plugin scan imports this module
    import optuna

log = logging.getLogger(__name__)

RESULTS = "optimization_results.yaml"
JOURNAL = "optuna_study.log"  # the study of a sweep given no storage, in its sweep dir


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Callable[..., optuna.samplers.BaseSampler],
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        pruner: str,
        params: DictConfig | None,
    ):
        choice(pruner, "hydra.sweeper.pruner", PRUNERS)
        self.sampler, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, max(1, n_jobs)
        self.pruner = pruner
        self.params = {str(k): str(v) for k, v in (params or {}).items()}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        from cvtrain.sweeps import search_space

        # The preset's search first: a key given on the command line overrides it.
        preset = [f"{k}={v}" for k, v in self.params.items()]
        searched, fixed = search_space.parse(preset + arguments)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = self.storage or str(self.sweep_dir / JOURNAL)
        study = self.load_study(storage, searched)
        n_trials = self.n_trials
        if self.is_grid:  # each point of the grid once
            points = math.prod(len(v) for v in search_space.grid(searched).values())
            n_trials = min(n_trials, points)
        name, pruner = study.study_name, self.pruner
        log.info("study %s in %s: %d trials, pruner %s", name, storage, n_trials, pruner)
        job_idx = 0
        while job_idx < n_trials:
            trials = [study.ask(searched) for _ in range(min(self.n_jobs, n_trials - job_idx))]
            overrides = [self.job_overrides(t, fixed, storage, study.study_name) for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += len(returns)
            for trial, ret in zip(trials, returns):
                self.tell(study, trial, ret)
        write_results(study, self.sweep_dir / RESULTS)

    @property
    def is_grid(self) -> bool:
        return getattr(getattr(self.sampler, "func", None), "__name__", "") == "GridSampler"

    def load_study(self, storage: str, searched: dict) -> optuna.Study:
        """A study given storage continues (`load_if_exists`); its sampler is seeded past the
        trials it holds, so a resumed study explores anew instead of replaying its first ones."""
        import optuna

        from cvtrain.sweeps import search_space

        opened = open_storage(storage)
        name = self.study_name or "cvtrain"
        existing = 0
        if name in {s.study_name for s in optuna.get_all_study_summaries(opened)}:
            existing = len(optuna.load_study(study_name=name, storage=opened).trials)
        seed = self.sampler.keywords.get("seed")
        kwargs = {"seed": None if seed is None else seed + existing}
        grid = [search_space.grid(searched)] if self.is_grid else []
        sampler = self.sampler(*grid, **kwargs)
        return optuna.create_study(
            study_name=name,
            storage=opened,
            sampler=sampler,
            pruner=make_pruner(self.pruner),
            direction=self.direction,
            load_if_exists=True,
        )

    def job_overrides(
        self, trial: optuna.trial.Trial, fixed: dict[str, str], storage: str, study: str
    ) -> Sequence[str]:
        params = {**{k: str(v) for k, v in trial.params.items()}, **fixed}
        env = job_environment(storage, study, trial.number, self.pruner)
        env[SWEPT] = ",".join(trial.distributions)  # what the job's name shows
        hydra_env = [f"++hydra.job.env_set.{k}={quote(v)}" for k, v in env.items()]
        return [*(f"{k}={v}" for k, v in params.items()), *hydra_env]

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, ret: Any) -> None:
        import optuna

        job_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        value = float(ret.return_value)  # re-raises what stopped the sweep (Ctrl-C)
        pruned = compare.read_run(job_dir).status == compare.PRUNED
        try:  # a failed job scores +inf: the study learns to avoid it (NaN would abort it)
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
        except RuntimeError as exc:  # the grid sampler stops a study once its grid is done,
            if "Study.stop" not in str(exc):  # which Optuna allows only inside optimize()
                raise


def quote(value: str) -> str:
    """A value for Hydra's override grammar, whatever it holds (paths, URLs)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_results(study: optuna.Study, path: Path) -> None:
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return
    results = {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}
    rundir.write_atomic(path, lambda tmp: OmegaConf.save(OmegaConf.create(results), tmp))
