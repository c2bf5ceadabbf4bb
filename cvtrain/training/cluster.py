"""Which cluster this process is a worker of: TF_CONFIG, or the tasks of an `srun` step.

Pure Python, read before TensorFlow is imported: a bad cluster is a one-line error, and a
non-chief worker knows to leave the shared run directory to the chief from the start.
TensorFlow's own SlurmClusterResolver is not used: it counts GPUs with nvidia-smi (a crash on
CPU nodes without it) and divides them per task (a division by zero with none), and it orders
nodes alphabetically where srun numbers its tasks in node-list order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

from cvtrain.errors import ConfigError


def tf_config() -> dict[str, Any]:
    """TF_CONFIG as a dict ({} when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f"TF_CONFIG is not a JSON object: {raw[:80]!r}")
    return parsed


def tf_config_workers() -> int:
    """How many tasks TF_CONFIG's cluster lists (0 when it is unset)."""
    cluster = tf_config().get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def slurm_tasks() -> int:
    """How many tasks the current `srun` step runs (0 outside a step)."""
    raw = os.environ.get("SLURM_STEP_NUM_TASKS")
    return int(raw) if raw and "SLURM_PROCID" in os.environ else 0


def cluster_size() -> int:
    """Workers in this process's cluster: TF_CONFIG's if set, else the srun step's."""
    return tf_config_workers() or slurm_tasks()


def worker_rank() -> int:
    """0 for the chief (the one process that writes the run dir), 1.. for the other workers."""
    if tf_config_workers():
        task = tf_config().get("task", {})
        has_chief = bool(tf_config()["cluster"].get("chief"))
        if task.get("type") == "chief":
            return 0
        return int(task.get("index", 0)) + has_chief
    return int(os.environ["SLURM_PROCID"]) if slurm_tasks() > 1 else 0


def expand_tasks_per_node(spec: str) -> list[int]:
    """SLURM's tasks-per-node list, e.g. '2(x3),1' -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not match:
            raise ConfigError(f"SLURM_STEP_TASKS_PER_NODE={spec!r} is not a tasks-per-node list")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def slurm_hostnames(nodelist: str) -> list[str]:
    """`scontrol show hostnames`: SLURM's own expansion of a node list such as 'gpu[01-04]'."""
    if shutil.which("scontrol") is None:
        raise ConfigError(
            "SLURM_STEP_NUM_TASKS is set but scontrol is not on PATH; run cvtrain through srun "
            "on a SLURM node, or unset the SLURM_* variables"
        )
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def slurm_cluster(port: int) -> dict[str, Any]:
    """The srun step as a TF_CONFIG dict: task i on a node listens on `port + i`.

    srun's default block distribution numbers tasks node by node in node-list order; a step
    started otherwise is refused, since its ranks would not match these addresses.
    """
    hosts = slurm_hostnames(os.environ.get("SLURM_STEP_NODELIST", ""))
    counts = expand_tasks_per_node(os.environ.get("SLURM_STEP_TASKS_PER_NODE", ""))
    if len(hosts) != len(counts) or sum(counts) != slurm_tasks():
        raise ConfigError(
            f"SLURM step of {slurm_tasks()} tasks does not match its nodes {hosts} x tasks "
            f"{counts}; start cvtrain with srun inside the allocation"
        )
    workers = [f"{host}:{port + i}" for host, n in zip(hosts, counts) for i in range(n)]
    rank = int(os.environ["SLURM_PROCID"])
    node = os.environ.get("SLURMD_NODENAME")
    if node and workers[rank].rsplit(":", 1)[0] != node:
        raise ConfigError(
            f"SLURM task {rank} runs on {node}, not {workers[rank]}: start the workers with "
            "srun --distribution=block (the default)"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
