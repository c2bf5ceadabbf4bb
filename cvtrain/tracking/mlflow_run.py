"""MLflow experiment tracking (`tracking=mlflow`), next to TensorBoard, which stays on.

Each training process is one MLflow run: the flattened config as params, every history column
per epoch (step = epoch, as in history.csv and TensorBoard), the run dir's artefacts when it
ends, and tags for the run dir and git commit. A multirun job is nested under one parent run
per sweep dir: the first job creates it and later jobs find it by its tag, so this works with
launchers that share a process and with those that do not. mlflow is imported only here, and
only when tracking is on (it is slow to import).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import keras
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from cvtrain import rundir
from cvtrain.config.schema import RunConfig, TrackingConfig
from cvtrain.errors import UserError
from cvtrain.rundir import compare, manifest
from cvtrain.tracking.hparams import run_hparams
from cvtrain.training.interrupt import Interrupted

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

RUN_DIR_TAG = "cvtrain.run_dir"
SWEEP_DIR_TAG = "cvtrain.sweep_dir"
STATUS_TAG = "cvtrain.status"
ROLE_TAG = "cvtrain.role"  # "sweep" on the parent run of a multirun
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests the run under it
COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the UI shows it with the run
# Logged when the run ends, where they exist: (file in the run dir, folder in the MLflow run).
ARTIFACTS = (
    (rundir.CHECKPOINT, "checkpoints"),
    (Path(rundir.CURVES), None),
    (Path(rundir.PREDICTIONS), None),
    (Path(rundir.CONFUSION_MATRIX), None),
    (Path(rundir.METRICS), None),
    (Path(rundir.MANIFEST), None),
    (Path(rundir.HISTORY), None),
)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a server that is not there (MLflow would retry for minutes)."""
    url = urlparse(uri)
    if url.scheme not in ("http", "https"):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"tracking.uri={uri}: no MLflow server answers ({exc.strerror or exc}); start one "
            "(mlflow server --host 127.0.0.1 --port 5000) or fix tracking.uri"
        ) from None


def experiment_id(client: MlflowClient, cfg: TrackingConfig) -> str:
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(cfg.experiment, artifact_location=cfg.artifact_location)


def short_name(path: Path) -> str:
    """<date>/<time> for a run, <time>/<job> for a sweep job: what the UI lists."""
    return f"{path.parent.name}/{path.name}"


def sweep_dir() -> Path | None:
    """The multirun's sweep dir when this process runs a sweep job, else None."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).resolve()


def sweep_parent(client: MlflowClient, experiment: str, sweep: Path) -> str:
    """The id of the sweep's parent run, created by its first job."""
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.`{SWEEP_DIR_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'sweep'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    parent = client.create_run(
        experiment,
        run_name=short_name(sweep),
        tags={SWEEP_DIR_TAG: str(sweep), ROLE_TAG: "sweep"},
    )
    return parent.info.run_id


class MlflowTracker(keras.callbacks.Callback):
    """Logs each epoch's metrics to one MLflow run; `end` adds the artefacts and the status."""

    def __init__(self, client: MlflowClient, run_id: str, parent_id: str | None):
        super().__init__()
        self.client, self.run_id, self.parent_id = client, run_id, parent_id

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in (logs or {}).items()]
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
        except (MlflowException, OSError) as exc:  # the run dir has it all: keep training
            log.warning("MLflow: could not log epoch %d: %s", epoch + 1, exc)

    def end(self, run_dir: Path, status: str) -> None:
        if status == "FINISHED":
            for path, folder in ARTIFACTS:
                if (run_dir / path).is_file():
                    self.client.log_artifact(self.run_id, str(run_dir / path), folder)
            # completed or pruned (a sweep's pruner stopped it), as summary.csv says
            self.client.set_tag(self.run_id, STATUS_TAG, compare.read_run(run_dir).status)
        self.client.set_terminated(self.run_id, status)
        if self.parent_id:  # the sweep's run ends with its last job
            self.client.set_terminated(self.parent_id)


def start(cfg: RunConfig, run_dir: Path) -> MlflowTracker:
    """Open the MLflow run for `run_dir` (nested under its sweep's run) and log its params."""
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    uri = cfg.tracking.uri
    check_reachable(uri)
    run_dir = run_dir.resolve()
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = experiment_id(client, cfg.tracking)
        sweep = sweep_dir()
        parent = sweep_parent(client, experiment, sweep) if sweep else None
        tags = {RUN_DIR_TAG: str(run_dir), "cvtrain.command": manifest.command()}
        commit = manifest.git_commit()
        if commit:
            tags[COMMIT_TAG] = commit
        if parent:
            tags |= {PARENT_TAG: parent, SWEEP_DIR_TAG: str(sweep)}
        run = client.create_run(experiment, run_name=short_name(run_dir), tags=tags)
        params = [Param(k, str(v)) for k, v in run_hparams(cfg).items()]
        client.log_batch(run.info.run_id, params=params)
    except MlflowException as exc:
        message = " ".join(str(exc.message).split())
        raise UserError(f"tracking.uri={uri}: MLflow failed: {message}") from None
    log.info("MLflow run %s in experiment %r at %s", run.info.run_id, cfg.tracking.experiment, uri)
    return MlflowTracker(client, run.info.run_id, parent)


@contextmanager
def track(cfg: RunConfig, run_dir: Path) -> Iterator[list[keras.callbacks.Callback]]:
    """The tracking callbacks for one training (none with tracking=none); the MLflow run ends
    FINISHED with the artefacts, FAILED on an error or KILLED on Ctrl-C/SIGTERM."""
    if cfg.tracking.name == "none":
        yield []
        return
    tracker = start(cfg, run_dir)
    try:
        yield [tracker]
    except Interrupted:
        tracker.end(run_dir, "KILLED")
        raise
    except BaseException:
        tracker.end(run_dir, "FAILED")
        raise
    tracker.end(run_dir, "FINISHED")
