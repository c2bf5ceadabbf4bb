"""Sweeps through the CLI (one subprocess per sweep): grid, Optuna, failing jobs; summaries."""

from __future__ import annotations

import csv
import json
import math
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO, mlflow_overrides, run_cli, tiny_segmentation
from helpers import free_port, run_probe
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cvtrain.cli.main import config_dir
from cvtrain.errors import UserError


def read_summary(sweep_dir):
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def job_overrides(job_dir) -> list[str]:
    return yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.slow
def test_grid_sweep_runs_every_job_and_summarises_them_by_val_loss(grid_sweep):
    sweep, proc, _ = grid_sweep  # conftest's 2x2 grid (tracked with MLflow: test_tracking.py)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:  # each job has the whole run-dir contract
        for name in ("checkpoints/best.keras", "metrics.json", "manifest.json", "history.csv"):
            assert (job / name).is_file(), f"{job.name}/{name}"
        manifest = json.loads((job / "manifest.json").read_text())
        assert shlex.split(manifest["command"]) == ["cvtrain", *job_overrides(job)]

    rows = read_summary(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    losses = [float(r["best_val_loss"]) for r in rows]
    assert losses == sorted(losses)
    for row in rows:
        metrics = json.loads((sweep / row["run"] / "metrics.json").read_text())
        assert float(row["best_val_loss"]) == pytest.approx(metrics["best_val_loss"], abs=1e-4)
        assert float(row["val_mean_iou"]) == pytest.approx(
            metrics["best"]["val_mean_iou"], abs=1e-4
        )
        # only what tells the jobs apart, e.g. "optimizer.lr=0.003 model.dropout=0.2"
        assert row["overrides"].split() == job_overrides(sweep / row["run"])[-2:]
    assert {r["overrides"] for r in rows} == {
        f"optimizer.lr={lr} model.dropout={d}" for lr in ("0.001", "0.003") for d in ("0", "0.2")
    }
    md = (sweep / "summary.md").read_text().splitlines()
    assert len(md) == 2 + 4 and md[2].startswith(f"| {rows[0]['run']} |")
    assert "Sweep finished: 4 of 4 jobs completed" in proc.stdout


@pytest.mark.slow
def test_each_job_logs_what_describes_it_and_its_best_epoch_to_tensorboard(grid_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    sweep, _, _ = grid_sweep
    job = sweep / "3"  # lr=3e-3, dropout=0.2
    acc = EventAccumulator(str(job / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    assert start.group_name == "sweep/3 optimizer.lr=0.003 model.dropout=0.2"
    hparams = start.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(3e-3)
    assert hparams["model.dropout"].number_value == pytest.approx(0.2)
    assert hparams["trainer.epochs"].number_value == 1  # set on the command line
    assert hparams["model.name"].string_value == "seg_convnet"  # a key one
    assert hparams["data.image_size"].string_value == "[32, 32]"
    assert "data.augment.flip" not in hparams and "trainer.port" not in hparams  # defaults

    metrics = json.loads((job / "metrics.json").read_text())
    best = tensor_util.make_ndarray(acc.Tensors("at_best_epoch/val_loss")[-1].tensor_proto)
    assert float(best) == pytest.approx(metrics["best_val_loss"], rel=1e-5)
    assert acc.Tensors("at_best_epoch/val_mean_iou")[-1].step == 1  # epochs from 1, as the CLI


# TensorBoard's runs for a sweep of 4 jobs: each job's hparams session and its two loggers
RUNS = {f"{job}/tensorboard{part}" for job in "0123" for part in ("", "/train", "/validation")}


# What TensorBoard's HParams table asks for (the sessions of every status, the first 100)
SESSION_GROUPS = {
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    "sliceSize": 100,
}


def post_json(url: str, body: dict) -> dict:
    import urllib.request

    data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


@pytest.mark.slow
def test_tensorboard_serves_the_sweep_as_a_user_reads_it(grid_sweep):
    """What the browser reads from TensorBoard's HTTP API for `tensorboard --logdir <sweep>`."""
    import subprocess
    import sys
    import time
    import urllib.parse
    import urllib.request

    sweep, _, _ = grid_sweep
    port = free_port()
    board = subprocess.Popen(
        [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(sweep)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline, tags, groups = time.monotonic() + 120, {}, {}
        while True:  # TensorBoard answers before it has read the logdir: wait for the runs
            assert board.poll() is None, board.stderr.read()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/scalars/tags", timeout=5) as answer:
                    tags = json.load(answer)
                groups = post_json(f"{url}/hparams/session_groups", SESSION_GROUPS)
                if set(tags) == RUNS and len(groups.get("sessionGroups", [])) == 4:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"TensorBoard showed {set(tags)}, {groups}"
            time.sleep(1)
        experiment = post_json(f"{url}/hparams/experiment", {"includeMetrics": True})
        query = urllib.parse.urlencode({"run": "0/tensorboard/validation", "tag": "epoch_loss"})
        with urllib.request.urlopen(f"{url}/scalars/scalars?{query}", timeout=30) as answer:
            points = json.load(answer)
    finally:
        board.terminate()
        board.wait(timeout=30)

    names = sorted(g["name"] for g in groups["sessionGroups"])
    assert names == [
        f"sweep/{job} optimizer.lr={lr} model.dropout={d}"
        for job, (lr, d) in enumerate((lr, d) for lr in ("0.001", "0.003") for d in ("0", "0.2"))
    ]
    columns = [h["name"] for h in experiment["hparamInfos"]]
    assert columns[:2] == ["model.dropout", "optimizer.lr"]  # the ones that differ come first
    assert len(columns) <= 15 and "data.images_dir" not in columns
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"at_best_epoch/val_loss", "at_best_epoch/val_mean_iou"} <= metrics
    assert "at_best_epoch/val_loss" in tags["0/tensorboard"]
    assert [step for _, step, _ in points] == [1]  # epoch 1 of 1, as the CLI counts it


@pytest.mark.slow
def test_runs_mode_lists_a_sweep_best_first_without_tensorflow(grid_sweep, tmp_path):
    sweep, _, _ = grid_sweep
    proc = run_probe("mode=runs", f"path={sweep}", f"hydra.run.dir={tmp_path / 'listing'}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("TF_NOT_IMPORTED")
    cells = [line.split("│") for line in proc.stdout.splitlines() if "completed" in line]
    order = [row[1].strip() for row in cells if len(row) > 2]
    assert order == [r["run"] for r in read_summary(sweep)]
    assert not (tmp_path / "listing").exists()  # listing runs leaves no run dir behind


@pytest.mark.slow
def test_optuna_sweep_minimises_val_loss_in_a_resumable_sqlite_study(pets_root, tmp_path):
    import optuna

    db = tmp_path / "study.db"

    def optuna_sweep(sweep, n_trials: int):
        return run_cli(
            "-m",
            "hparams_search=segmentation_optuna",
            *tiny_segmentation(pets_root, "trainer.epochs=1", "trainer.prediction_images=0"),
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.storage=sqlite:///{db}",
            f"hydra.sweep.dir={sweep}",
        )

    sweep = tmp_path / "sweep"
    proc = optuna_sweep(sweep, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = read_summary(sweep)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(float(rows[0]["best_val_loss"]), abs=1e-4)
    best_job = job_overrides(sweep / rows[0]["run"])
    for key, value in results["best_params"].items():
        assert f"{key}={value}" in best_job
        if key == "optimizer.lr":
            assert 1e-4 <= value <= 1e-2
    assert "data.batch_size" not in results["best_params"]  # fixed on the command line

    study = optuna.load_study(study_name="segmentation", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.best_value == pytest.approx(results["best_value"])
    first = [t.value for t in study.trials]

    # The same command again continues the study: n_trials (here 1) new trials, numbered after
    # the first two.
    again = optuna_sweep(tmp_path / "sweep2", 1)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="segmentation", storage=f"sqlite:///{db}").trials
    assert [t.number for t in trials] == list(range(3))
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert [t.value for t in trials[:2]] == first  # kept as they were
    # a resumed study explores anew: its seeded sampler does not replay the first trials
    assert trials[2].params not in [t.params for t in trials[:2]]
    new = sorted(float(r["best_val_loss"]) for r in read_summary(tmp_path / "sweep2"))
    assert len(new) == 1 and sorted(t.value for t in trials[2:]) == pytest.approx(new, abs=1e-4)


@pytest.mark.slow
def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(pets_root, tmp_path):
    """Optuna's grid sampler tries each lr once: fine, diverges (NaN), invalid (raises), fine."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        *tiny_segmentation(pets_root, "trainer.epochs=1", "trainer.prediction_images=0"),
        "optimizer.lr=choice(1e-3,1e6,-1,3e-3)",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = {r["overrides"]: r for r in read_summary(sweep)}
    assert list(rows.values())[0]["status"] == "completed"  # best first, failures last
    assert [r["status"] for r in rows.values()] == ["completed"] * 2 + ["failed"] * 2
    diverged, invalid = rows["optimizer.lr=1000000.0"], rows["optimizer.lr=-1"]
    assert "nan" in diverged["error"].lower() and diverged["best_val_loss"] == "-"
    assert "optimizer.lr=-1.0 must be > 0" in invalid["error"]
    for row in (diverged, invalid):
        failure = json.loads((sweep / row["run"] / "failure.json").read_text())
        assert failure["status"] == "failed" and failure["error"] == row["error"]
    for lr in ("0.001", "0.003"):
        assert (sweep / rows[f"optimizer.lr={lr}"]["run"] / "checkpoints" / "best.keras").is_file()

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert math.isfinite(results["best_value"]) and results["best_params"]["optimizer.lr"] > 0
    assert "Sweep finished: 2 of 4 jobs completed" in proc.stdout


@pytest.mark.slow
def test_a_pruned_trial_is_recorded_as_pruned_and_its_run_dir_stays_valid(pets_root, tmp_path):
    """Seeded grid order (Optuna's grid sampler, seed 3): bad, good, good, then bad, whose
    best val_loss after epoch 2 trails the median of the three before it at that epoch."""
    import optuna
    from mlflow import MlflowClient

    from cvtrain.sweeps.job import open_storage

    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.pruner=median",
        *tiny_segmentation(pets_root, "trainer.epochs=3", "trainer.prediction_images=0"),
        *mlflow_overrides(tmp_path),
        "optimizer.lr=choice(3e-3,1e-7)",
        "trainer.seed=choice(1,2)",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["run"]: r for r in read_summary(sweep)}
    assert [rows[job]["status"] for job in "0123"] == ["completed"] * 3 + ["pruned"]
    assert "Sweep finished: 3 of 4 jobs completed, 1 pruned" in proc.stdout
    pruned = sweep / "3"
    assert "optimizer.lr=1e-07" in job_overrides(pruned)
    metrics = json.loads((pruned / "metrics.json").read_text())
    assert metrics["pruned_at_epoch"] == metrics["epochs_run"] < 3  # it stopped early
    assert (pruned / "checkpoints" / "best.keras").is_file()  # valid: best of the epochs it ran
    assert metrics["best_val_loss"] == pytest.approx(float(rows["3"]["best_val_loss"]), abs=1e-4)

    journal = open_storage(str(sweep / "optuna_study.log"))  # a sweep given no storage
    study = optuna.load_study(study_name="cvtrain", storage=journal)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["PRUNED"]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("cvtrain").experiment_id])
    jobs = {Path(r.data.tags["cvtrain.run_dir"]).name: r for r in runs if r.data.params}
    assert {job: r.data.tags["cvtrain.status"] for job, r in jobs.items()} == {
        "0": "completed",
        "1": "completed",
        "2": "completed",
        "3": "pruned",
    }


def test_the_median_pruner_never_judges_a_trial_on_its_first_epoch_alone():
    """A first epoch mostly measures the random start (benchmarks/pruning.py's note): a trial
    far behind after epoch 1 goes on; still behind after epoch 2, it is pruned."""
    import optuna

    from cvtrain.sweeps.job import make_pruner

    study = optuna.create_study(pruner=make_pruner("median"))
    for losses in ([0.9, 0.8], [1.0, 0.9], [0.95, 0.85]):  # 3 trials before any pruning
        trial = study.ask()
        for epoch, loss in enumerate(losses, 1):
            trial.report(loss, epoch)
        study.tell(trial, losses[-1])
    slow_start = study.ask()
    slow_start.report(1.9, 1)
    assert not slow_start.should_prune()
    slow_start.report(1.2, 2)
    assert slow_start.should_prune()


def test_the_search_space_reads_hydras_sweep_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from cvtrain.sweeps.search_space import grid, parse

    searched, fixed = parse(
        [
            "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
            "model.dropout=interval(0.0, 0.3)",
            "data.batch_size=choice(16, 32, 64)",
            "model.width=0.5",
            "trainer.epochs=range(2, 8, 2)",
            "model.dropout=0.1",  # a later value for the same key wins, as in Hydra
        ]
    )
    assert searched == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "data.batch_size": CategoricalDistribution([16, 32, 64]),
        "trainer.epochs": IntDistribution(2, 6, step=2),  # range's stop is left out
    }
    assert fixed == {"model.width": "0.5", "model.dropout": "0.1"}
    assert grid({k: searched[k] for k in ("data.batch_size", "trainer.epochs")}) == {
        "data.batch_size": [16, 32, 64],
        "trainer.epochs": [2, 4, 6],
    }
    with pytest.raises(UserError, match="optimizer.lr is an interval; the grid sampler needs"):
        grid(searched)


def test_a_failed_trial_scores_inf_with_its_traceback_and_takes_gpu_memory_as_needed(
    tmp_path, monkeypatch
):
    import os

    from cvtrain.rundir.sweep import run_trial

    monkeypatch.setattr(os, "environ", {})  # restored after the test
    seen = {}

    def crash():
        seen["growth"] = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
        raise RuntimeError("boom")

    assert run_trial(crash, tmp_path) == math.inf
    assert seen["growth"] == "true"  # set before the job touches the GPU
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["error"] == "RuntimeError: boom"
    assert 'raise RuntimeError("boom")' in failure["traceback"]
    assert run_trial(lambda: float("nan"), tmp_path) == math.inf
    assert run_trial(lambda: 0.5, tmp_path) == 0.5


def compose_hydra(*overrides: str):
    from cvtrain.cli import main  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_optuna_search_spaces_are_seeded_tpe_over_the_main_knobs(task):
    if not (REPO / "configs" / "task" / f"{task}.yaml").is_file():
        pytest.skip(f"task={task} is not configured in this checkout")
    cfg = compose_hydra(f"hparams_search={task}_optuna")
    sweeper = cfg.hydra.sweeper
    assert cfg.task.name == task
    assert sweeper.direction == "minimize" and sweeper.sampler.seed is not None
    assert "TPESampler" in sweeper.sampler._target_
    assert set(sweeper.params) == {
        "optimizer.lr",
        "data.batch_size",
        "model.width",
        "model.dropout",
    }
    assert sweeper.n_trials == 20 and sweeper.params["optimizer.lr"].startswith("tag(log,")


def test_launcher_presets_extend_the_joblib_and_slurm_plugins():
    parallel = compose_hydra("hydra/launcher=parallel").hydra.launcher
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2
    slurm = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.partition, slurm.gpus_per_node, slurm.timeout_min) == ("gpu", 1, 240)
    assert (slurm.cpus_per_task, slurm.mem_gb) == (8, 32)
    folder = OmegaConf.to_container(slurm, resolve=False)["submitit_folder"]
    assert folder.startswith("${hydra.sweep.dir}/.submitit/")  # job logs: <sweep_dir>/.submitit/


def test_task_function_pickles_by_reference_for_process_launchers():
    """joblib and submitit pickle the task function; by value it would drag the console along."""
    import pickle

    from cvtrain.cli import main as cli

    assert pickle.loads(pickle.dumps(cli.task)) is cli.task
