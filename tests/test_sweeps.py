"""Sweeps through the CLI (one subprocess per sweep): grid, Optuna, failing jobs; summaries."""

from __future__ import annotations

import csv
import json
import math
import shlex

import pytest
import yaml
from conftest import REPO, run_cli, tiny_segmentation
from helpers import run_probe
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cvtrain.cli.main import config_dir


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
def test_each_job_logs_its_hparams_and_best_metrics_to_tensorboard(grid_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    sweep, _, _ = grid_sweep
    job = sweep / "3"  # lr=3e-3, dropout=0.2
    acc = EventAccumulator(str(job / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    hparams = metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(3e-3)
    assert hparams["model.dropout"].number_value == pytest.approx(0.2)
    assert hparams["trainer.epochs"].number_value == 1
    assert hparams["model.name"].string_value == "seg_convnet"
    assert hparams["data.augment.flip"].HasField("bool_value")
    assert hparams["data.image_size"].string_value == "[32, 32]"

    metrics = json.loads((job / "metrics.json").read_text())
    best = tensor_util.make_ndarray(acc.Tensors("best_val_loss")[-1].tensor_proto)
    assert float(best) == pytest.approx(metrics["best_val_loss"], rel=1e-5)
    assert "best_val_mean_iou" in acc.Tags()["tensors"]


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
