"""manifest.json: what it takes to reproduce a run (seed, code, versions, devices, data)."""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tensorflow as tf
from hydra.core.hydra_config import HydraConfig

from cvtrain import rundir
from cvtrain.config.schema import RunConfig
from cvtrain.data.index import Split

PACKAGES = (
    "cvtrain",
    "tensorflow",
    "keras",
    "tensorboard",
    "hydra-core",
    "omegaconf",
    "numpy",
    "rich",
    "optuna",
)


def git_commit() -> str | None:
    """The commit of the cvtrain checkout, if it is one (a wheel install has none)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def devices() -> dict:
    """What the run could see: TF's devices, GPU models, and the CUDA/cuDNN TF was built with."""
    build = tf.sysconfig.get_build_info()
    return {
        "logical": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")
        ],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }


def dataset_fingerprint(split: Split) -> dict:
    """Sample counts plus two hashes, both of paths relative to the data root (so a moved copy
    matches): `index` of the files and targets whatever the split, `split` of which sample
    went where, in order. Same index and split = same data seen in the same order."""
    train, val = split.train, split.val
    pairs = sorted(zip(train.images + val.images, train.targets + val.targets), key=str)
    images, targets = (tuple(column) for column in zip(*pairs))
    everything = replace(train, images=images, targets=targets, subsets=())
    order = hashlib.sha256(f"{train.fingerprint()} {val.fingerprint()}".encode())
    return {
        "samples": len(train) + len(val),
        "train": len(train),
        "val": len(val),
        "classes": list(train.class_names),
        "index": everything.fingerprint(),
        "split": order.hexdigest()[:16],
        "root": train.root,
    }


def job_overrides() -> list[str]:
    """This run's own overrides (a sweep job's, not the sweep's command line)."""
    return list(HydraConfig.get().overrides.task if HydraConfig.initialized() else sys.argv[1:])


def command() -> str:
    """The command that repeats this run."""
    return shlex.join(["cvtrain", *job_overrides()])


def write(
    path: Path,
    cfg: RunConfig,
    split: Split,
    precision: str,
    parameters: int,
    class_weights: Sequence[float] | None,
) -> None:
    """`class_weights`: what the loss was given (loss.class_weights resolved; None: unweighted)."""
    rundir.write_json(
        path,
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": cfg.trainer.seed,
            "deterministic": cfg.trainer.deterministic,
            "git_commit": git_commit(),
            "command": command(),
            "host": platform.node(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "devices": devices(),
            "precision": precision,
            "model": cfg.model.name,
            "parameters": parameters,
            "loss": {
                "name": cfg.loss.name,
                "class_weights": list(class_weights) if class_weights else None,
            },
            "dataset": dataset_fingerprint(split),
        },
    )
