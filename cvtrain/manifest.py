"""manifest.json: what it takes to reproduce a run (seed, code, versions, devices, data)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tensorflow as tf

from cvtrain import artifacts
from cvtrain.config import RunConfig
from cvtrain.data.index import Split

PACKAGES = ("cvtrain", "tensorflow", "keras", "hydra-core", "omegaconf", "numpy", "rich")


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


def dataset_fingerprint(split: Split) -> dict:
    """Sample counts plus hashes of the file index and of the split: same data, same split."""
    order = hashlib.sha256("\n".join(split.train.images + ("--",) + split.val.images).encode())
    return {
        "samples": len(split.train) + len(split.val),
        "train": len(split.train),
        "val": len(split.val),
        "classes": list(split.train.class_names),
        "index": hashlib.sha256(
            (split.train.fingerprint() + split.val.fingerprint()).encode()
        ).hexdigest()[:16],
        "split": order.hexdigest()[:16],
        "root": split.train.root,
    }


def write(path: Path, cfg: RunConfig, split: Split, precision: str, parameters: int) -> None:
    artifacts.write_json(
        path,
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": cfg.trainer.seed,
            "deterministic": cfg.trainer.deterministic,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "precision": precision,
            "model": cfg.model.name,
            "parameters": parameters,
            "dataset": dataset_fingerprint(split),
        },
    )
