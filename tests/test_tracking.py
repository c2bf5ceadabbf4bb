"""tracking=mlflow: what a run logs, read back with MLflow's own client (no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_config, mlflow_overrides, run_cli, tiny_segmentation, train_run
from helpers import free_port

from cvtrain.errors import ConfigError, UserError


def runs_of(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("cvtrain")
    return client, client.search_runs([experiment.experiment_id])


def read_history(run_dir) -> dict[str, list[float]]:
    from cvtrain.training.trainer import read_history

    return read_history(run_dir / "history.csv")


def test_tracking_defaults_off_and_validates():
    assert make_config().tracking.name == "none"
    cfg = make_config("tracking=mlflow")
    assert (cfg.tracking.uri, cfg.tracking.experiment) == ("sqlite:///mlflow.db", "cvtrain")
    with pytest.raises(ConfigError, match="tracking.name='wandb' is not one of none, mlflow"):
        make_config("tracking.name=wandb")
    with pytest.raises(ConfigError, match="tracking.uri="):
        make_config("tracking=mlflow", "tracking.uri=' '")


@pytest.mark.slow
def test_tracking_none_does_not_import_mlflow():
    code = "import sys, cvtrain.training.trainer; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.slow
def test_run_logs_params_metrics_artifacts_and_tags(tmp_path, pets_root):
    import keras

    run_dir = train_run(
        tmp_path / "run",
        *tiny_segmentation(pets_root, "optimizer.lr=0.002"),
        *mlflow_overrides(tmp_path),
    )
    client, runs = runs_of(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.002"
    assert run.data.params["model.width"] == "0.25"
    history = read_history(run_dir)
    assert {"loss", "val_loss", "val_mean_iou"} <= set(history)
    for name in [column for column in history if column != "epoch"]:  # every column
        logged = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        assert [m.step for m in logged] == [0, 1]
        assert [m.value for m in logged] == pytest.approx(history[name], rel=1e-5)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert run.data.tags["cvtrain.run_dir"] == str(run_dir.resolve())
    assert (
        manifest["git_commit"]
        and run.data.tags["mlflow.source.git.commit"] == manifest["git_commit"]
    )

    got = tmp_path / "downloaded"
    got.mkdir()
    client.download_artifacts(run.info.run_id, "", str(got))
    for name in ("curves.png", "predictions.png", "metrics.json", "manifest.json", "history.csv"):
        assert (got / name).read_bytes() == (run_dir / name).read_bytes()
    assert (got / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    best = got / "checkpoints" / "best.keras"
    assert best.read_bytes() == (run_dir / "checkpoints" / "best.keras").read_bytes()
    assert keras.models.load_model(best).count_params() > 0  # a Keras model, not just bytes
    stored = list((tmp_path / "mlartifacts").rglob("curves.png"))  # tracking.artifact_location
    assert len(stored) == 1 and stored[0].read_bytes() == (run_dir / "curves.png").read_bytes()


@pytest.mark.slow
def test_sweep_jobs_nest_under_one_parent_run(grid_sweep):
    sweep, _, store = grid_sweep  # conftest's 2x2 grid of optimizer.lr x model.dropout
    _, runs = runs_of(store)
    parents = [r for r in runs if r.data.tags.get("cvtrain.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["cvtrain.sweep_dir"] == str(sweep.resolve())
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(jobs) == 4
    assert sorted(j.data.tags["cvtrain.run_dir"] for j in jobs) == [
        str(sweep.resolve() / job) for job in "0123"
    ]
    assert sorted(j.data.params["optimizer.lr"] for j in jobs) == ["0.001"] * 2 + ["0.003"] * 2
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_unreachable_server_is_a_one_line_error(tmp_path, pets_root):
    uri = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        *tiny_segmentation(pets_root, "tracking=mlflow", f"tracking.uri={uri}"),
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("cvtrain: error:")]
    assert errors == [errors[0]] and f"tracking.uri={uri}: no MLflow server answers" in errors[0]
    assert not (tmp_path / "run" / "history.csv").exists()  # before training started


def test_unsupported_uri_is_a_user_error(tmp_path):
    from cvtrain.tracking import mlflow_run

    cfg = make_config("tracking=mlflow", "tracking.uri=bogus://nowhere")
    with pytest.raises(UserError, match=r"tracking.uri=bogus://nowhere: MLflow failed: .*URI") as e:
        mlflow_run.start(cfg, tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_mlflow_ui_starts_from_the_projects_venv_on_the_store_cvtrain_wrote(grid_sweep):
    """`mlflow ui` needs SQLAlchemy 2, as the Optuna sweeper's storage now does: one venv."""
    import time
    import urllib.request
    from pathlib import Path

    _, _, store = grid_sweep
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    ui = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{store}/mlflow.db"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    search = f"{url}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert ui.poll() is None, ui.stderr.read()[-3000:]
            try:
                with urllib.request.urlopen(search, timeout=5) as answer:
                    status, body = answer.status, json.load(answer)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not answer in 120 s"
                time.sleep(0.5)
        with urllib.request.urlopen(url, timeout=5) as page:
            assert page.status == 200
    finally:
        ui.terminate()
        ui.wait(timeout=30)
    assert status == 200
    assert "cvtrain" in {e["name"] for e in body["experiments"]}
