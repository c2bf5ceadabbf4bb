"""Two workers on 127.0.0.1 sharing one run dir: kills, resume, SIGTERM, an srun step."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import CVTRAIN, REPO, make_config, tiny_segmentation
from test_resume import history_rows

from cvtrain import rundir
from cvtrain.errors import ConfigError
from cvtrain.state import resume

# The README's multi-worker command (sbatch, Kubernetes); the tests add tiny data and a run dir.
RECIPE = ["task=segmentation", "trainer.loop=custom"]
# 16 train / 8 val samples, 6 steps of 4 images per worker and epoch.
SHORT = ("data.limit=24", "trainer.prediction_images=0", "trainer.steps_per_epoch=6")


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 (an srun step's layout)."""
    for _ in range(50):
        sockets = []
        try:
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            sockets.append(first)
            base = first.getsockname()[1]
            for offset in range(1, count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no consecutive free ports")


def worker_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*tiny_segmentation(root, *RECIPE, *SHORT, *extra), f"hydra.run.dir={run_dir}"]


def tf_config_envs(count: int) -> list[dict[str, str]]:
    base = consecutive_free_ports(count)
    workers = [f"127.0.0.1:{port}" for port in range(base, base + count)]
    tasks = [{"type": "worker", "index": i} for i in range(count)]
    return [{"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": t})} for t in tasks]


class Workers:
    """One cvtrain process per worker, each logging to its own file."""

    def __init__(self, args: list[str], envs: list[dict[str, str]], logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "TF_CONFIG"))}
        self.logs = [logs / f"worker{i}.txt" for i in range(len(envs))]
        self.procs = [
            subprocess.Popen(
                [*CVTRAIN, *args],
                env={**clean, "COLUMNS": "200", **env},
                stdout=open(log, "w"),  # noqa: SIM115  (closed with the process)
                stderr=subprocess.STDOUT,
            )
            for env, log in zip(envs, self.logs)
        ]

    def outputs(self) -> list[str]:
        return [log.read_text() for log in self.logs]

    def wait_for_epoch(self, run_dir: Path, epoch: int, timeout: float = 300) -> None:
        """Until the chief has saved the resume state after `epoch`."""
        deadline = time.monotonic() + timeout
        while (resume.load(run_dir) or resume.ResumeState(0, "")).epoch < epoch:
            assert all(p.poll() is None for p in self.procs), self.outputs()[0][-3000:]
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> list[str]:
        try:
            for p in self.procs:
                p.wait(timeout=timeout)
        finally:
            for p in self.procs:
                p.kill()  # a worker whose peer died would wait for it forever
        return self.outputs()


def final_digests(outputs: list[str]) -> list[str]:
    return [re.search(r"final weights sha256 (\w+)", out).group(1) for out in outputs]


def saved_weights_digest(run_dir: Path, args: list[str]) -> str:
    """The digest of the chief's last resume state on disk."""
    import keras

    from cvtrain.models import build_model
    from cvtrain.state import snapshots
    from cvtrain.training.custom_loop import weights_digest

    cfg = make_config(*args[:-1])
    model = build_model(cfg.model, (*cfg.data.image_size, 3), 3)
    saved = snapshots.read(run_dir / rundir.BACKUP / resume.load(run_dir).weights)
    snapshots.assign(model.variables, saved[: len(model.variables)], "the chief's state")
    keras.backend.clear_session()
    return weights_digest(model)


@pytest.mark.slow
def test_a_killed_worker_stops_the_chief_with_the_resume_command(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    workers = Workers(worker_args(pets_root, run_dir, "trainer.epochs=3"), tf_config_envs(2),
                      tmp_path / "logs")  # fmt: skip
    workers.wait_for_epoch(run_dir, 1)
    workers.procs[1].send_signal(signal.SIGKILL)
    chief = workers.finish(timeout=120)[0]
    assert workers.procs[0].returncode == 2, chief[-3000:]  # restart policies fire
    assert "cvtrain: error: lost contact with another worker" in chief
    assert f"cvtrain resume={run_dir}" in chief
    assert resume.load(run_dir).epoch in (1, 2)


@pytest.mark.slow
def test_a_killed_chief_stops_the_worker_and_both_resume_with_identical_weights(
    pets_root, tmp_path
):
    """The fault table's chief-SIGKILLed row, then its both-killed row: the chief dies without
    warning after epoch 2 of 4 (the worker, which keeps no state, stops on its own), and both
    are started again with resume=."""
    run_dir = tmp_path / "run"
    args = worker_args(pets_root, run_dir, "trainer.epochs=4")
    first = Workers(args, tf_config_envs(2), tmp_path / "first")
    try:
        first.wait_for_epoch(run_dir, 2)
    finally:
        first.procs[0].send_signal(signal.SIGKILL)
    worker = first.finish(timeout=120)[1]
    assert first.procs[1].returncode == 2, worker[-3000:]  # restart policies fire
    assert "cvtrain: error: lost contact with another worker" in worker
    assert f"cvtrain resume={run_dir}" in worker
    epoch = resume.load(run_dir).epoch
    assert epoch in (2, 3)  # the last epoch the chief committed

    outputs = Workers([f"resume={run_dir}"], tf_config_envs(2), tmp_path / "resumed").finish()
    for out in outputs:
        assert f"resuming after epoch {epoch}" in out, out[-3000:]
        assert "2 replicas" in out
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2, 3]
    assert resume.load(run_dir).epoch == 4
    chief, other = final_digests(outputs)
    assert chief == other == saved_weights_digest(run_dir, args)


def stop_message(out: str) -> str:
    return re.search(r"cvtrain: stopped by (.*?)during epoch (\d+)", out).group(0)


@pytest.mark.slow
def test_sigterm_on_one_worker_stops_all_at_one_step_then_resume_new_batch(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    args = worker_args(pets_root, run_dir, "trainer.epochs=3")
    workers = Workers(args, tf_config_envs(2), tmp_path / "first")
    workers.wait_for_epoch(run_dir, 1)
    workers.procs[1].send_signal(signal.SIGTERM)  # not the chief
    chief, other = workers.finish()
    assert [p.returncode for p in workers.procs] == [143, 143], chief[-3000:]
    assert "SIGTERM (sent to another worker) at step" in stop_message(chief)
    assert stop_message(chief).replace(" (sent to another worker)", "") == stop_message(other)
    stopped_in = int(re.search(r"during epoch (\d+)", chief).group(1))
    assert resume.load(run_dir).epoch == len(history_rows(run_dir)) == stopped_in - 1
    assert f"cvtrain resume={run_dir}" in chief

    # Continued with twice the global batch: 8 images per worker and step instead of 4.
    resumed = Workers([f"resume={run_dir}", "data.batch_size=16"], tf_config_envs(2),
                      tmp_path / "resumed")  # fmt: skip
    outputs = resumed.finish()
    assert [p.returncode for p in resumed.procs] == [0, 0], outputs[0][-3000:]
    assert all(f"resuming after epoch {stopped_in - 1}" in out for out in outputs), outputs[1]
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2]
    assert final_digests(outputs)[0] == final_digests(outputs)[1]


def fake_slurm(tmp_path: Path, tasks: int, per_node: str, node: str = "127.0.0.1") -> dict:
    """What srun sets for each task, and an `scontrol` that expands the node list to `node`
    (a space-separated list for several nodes)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    calls = tmp_path / "scontrol_calls.txt"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nprintf "%s\\n" {node}\n')
    scontrol.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_STEP_NODELIST": "node[01]",
        "SLURM_STEP_TASKS_PER_NODE": per_node,
        "SLURMD_NODENAME": node.split()[0],
    }


@pytest.mark.slow
def test_srun_step_of_two_tasks_trains_one_model_without_tf_config(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    port = consecutive_free_ports(2)
    slurm = fake_slurm(tmp_path, tasks=2, per_node="2")
    envs = [{**slurm, "SLURM_PROCID": str(rank)} for rank in range(2)]
    args = worker_args(pets_root, run_dir, "trainer.epochs=1", f"trainer.port={port}")
    workers = Workers(args, envs, tmp_path / "logs")
    outputs = workers.finish()
    assert [p.returncode for p in workers.procs] == [0, 0], outputs[1][-3000:]
    assert all("2 replicas" in out for out in outputs)  # trainer.strategy=auto chose multi_worker
    assert final_digests(outputs)[0] == final_digests(outputs)[1]
    assert (tmp_path / "scontrol_calls.txt").read_text().split("\n")[0] == "show hostnames node[01]"
    assert len(history_rows(run_dir)) == 1
    # The chief alone writes the run dir; the other worker only its own log.
    assert (run_dir / "cvtrain-worker1.log").is_file()
    assert "not the chief worker" in (run_dir / "cvtrain-worker1.log").read_text()
    assert "not the chief worker" not in (run_dir / "cvtrain.log").read_text()


def test_an_srun_step_is_the_cluster_in_block_order(tmp_path, monkeypatch):
    from cvtrain.config.schema import TrainerConfig
    from cvtrain.training.cluster import slurm_cluster, worker_rank
    from cvtrain.training.distribute import strategy_name

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in fake_slurm(tmp_path, tasks=4, per_node="2(x2)", node="n1 n2").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURMD_NODENAME", "n2")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert slurm_cluster(9000) == {
        "cluster": {"worker": ["n1:9000", "n1:9001", "n2:9000", "n2:9001"]},
        "task": {"type": "worker", "index": 3},
    }
    assert worker_rank() == 3
    assert strategy_name(TrainerConfig(loop="custom"), num_gpus=0) == "multi_worker"
    with pytest.raises(ConfigError, match="trainer.loop=custom"):
        strategy_name(TrainerConfig(), num_gpus=0)  # fit() in a multi-task step

    monkeypatch.setenv("SLURMD_NODENAME", "n1")  # rank 3 is not on n1: not srun's block order
    with pytest.raises(ConfigError, match="--distribution=block"):
        slurm_cluster(9000)
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2,1")  # 3 of the 4 tasks
    with pytest.raises(ConfigError, match="does not match its nodes"):
        slurm_cluster(9000)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="scontrol is not on PATH"):
        slurm_cluster(9000)

    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # e.g. one submitit sweep job
    assert worker_rank() == 0
    assert strategy_name(TrainerConfig(), num_gpus=0) == "one_device"


class TwoWorkerInputs:
    """What MultiWorkerMirroredStrategy does with a dataset function on two one-replica workers:
    call it once per worker with that worker's InputContext."""

    num_replicas_in_sync = 2

    def distribute_datasets_from_function(self, dataset_fn):
        import tensorflow as tf

        return [dataset_fn(tf.distribute.InputContext(2, worker, 2)) for worker in range(2)]


def test_each_worker_reads_only_its_own_shard_of_the_files(pets_root, tmp_path):
    from cvtrain.data.pipeline import build_dataset
    from cvtrain.data.sources import load_split
    from cvtrain.training.distribute import distributed_dataset

    cfg = make_config(*tiny_segmentation(pets_root, "data.limit=24"))
    train = load_split(cfg.data, cfg.task.name)[0].train  # 16 samples
    # Every training image as the pipeline decodes it, in index order: bytes -> sample number.
    whole = build_dataset(train, cfg.data, training=False, seed=0).unbatch()
    number = {image.numpy().tobytes(): i for i, (image, _) in enumerate(whole)}
    assert len(number) == len(train) == 16

    shards = distributed_dataset(
        TwoWorkerInputs(), train, cfg.data, training=True, seed=0, cache_dir=tmp_path
    )
    assert [[len(x) for x, _ in shard] for shard in shards] == [[4, 4], [4, 4]]  # global 8
    read = [[number[x.numpy().tobytes()] for x, _ in shard.unbatch()] for shard in shards]
    assert set(read[0]).isdisjoint(read[1])
    assert set(read[0]) | set(read[1]) == set(range(16))
    # A global batch of 16 is 8 images per worker and step; one that does not divide is refused.
    sixteen = replace(cfg.data, batch_size=16)
    shards = distributed_dataset(
        TwoWorkerInputs(), train, sixteen, training=True, seed=0, cache_dir=tmp_path / "16"
    )
    assert [[len(x) for x, _ in shard] for shard in shards] == [[8], [8]]
    with pytest.raises(ConfigError, match="data.batch_size=7 is the global batch and must divide"):
        distributed_dataset(
            TwoWorkerInputs(), train, replace(cfg.data, batch_size=7), training=True, seed=0,
            cache_dir=tmp_path / "7",
        )  # fmt: skip


def readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_sbatch_recipe_runs_the_tested_command_on_one_task_per_node():
    (script,) = [b for b in readme_blocks("bash") if "#SBATCH" in b]
    options = dict(
        line.removeprefix("#SBATCH --").partition("=")[::2]
        for line in script.splitlines()
        if line.startswith("#SBATCH")
    )
    assert options["nodes"] == "2" and options["ntasks-per-node"] == "1" and "requeue" in options
    run_dir = re.search(r"^RUN=(\S+)", script, flags=re.MULTILINE).group(1)
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    args = shlex.split(srun.replace("$RUN", run_dir))
    assert args[:2] == ["srun", "cvtrain"]
    assert args[2:] == [*RECIPE, f"hydra.run.dir={run_dir}"]
    assert make_config(*args[2:]).trainer.loop == "custom"


def test_kubernetes_recipe_has_one_pod_per_worker_each_with_its_tf_config():
    (manifest,) = [b for b in readme_blocks("yaml") if "kind: Job" in b]
    docs = {d["kind"]: d for d in yaml.safe_load_all(manifest)}
    service, job = docs["Service"], docs["Job"]
    spec, pod = job["spec"], job["spec"]["template"]
    workers = spec["completions"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == workers == 2
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    # A pod that fails is restarted with the same command (and resumes: same hydra.run.dir).
    assert pod["spec"]["restartPolicy"] == "OnFailure" and spec["backoffLimit"] > 0
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    index_from = env["INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_from == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    port = container["ports"][0]["containerPort"]
    # An Indexed Job's pod i is <job>-<i>, reachable as <job>-<i>.<subdomain>.
    name, subdomain = job["metadata"]["name"], pod["spec"]["subdomain"]
    pods = [f"{name}-{i}.{subdomain}:{port}" for i in range(workers)]
    for index in range(workers):
        tf_config = json.loads(env["TF_CONFIG"]["value"].replace("$(INDEX)", str(index)))
        assert tf_config == {
            "cluster": {"worker": pods},
            "task": {"type": "worker", "index": index},
        }
    command = container["command"]
    assert command[0] == "cvtrain" and command[1:-1] == RECIPE
    assert command[-1].startswith("hydra.run.dir=/") and make_config(*command[1:])


def test_submitit_sweep_recipes_compose_against_the_launcher_schema():
    from hydra import compose, initialize_config_dir

    from cvtrain.cli.main import config_dir

    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^\s*(cvtrain -m hydra/launcher=slurm .*)$", text, flags=re.MULTILINE)
    assert len(lines) >= 2
    for line in lines:
        overrides = shlex.split(line.split("#")[0])[2:]
        # One job's overrides: the first value of each swept key.
        job = [re.sub(r"=([^,\[]+),.*", r"=\1", o) for o in overrides]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=job, return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher"), line
