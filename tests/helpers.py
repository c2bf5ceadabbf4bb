"""Helpers shared by test modules (test modules never import each other)."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from conftest import CVTRAIN, make_config, tiny_segmentation

from cvtrain import rundir


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / rundir.HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def verified_split(cfg, run_dir: Path, *, defer: bool = False):
    """What mode=train (defer) and mode=evaluate do: the split less its bad files, and the
    background scan when one was started."""
    from cvtrain.data.sources import load_split
    from cvtrain.data.verify import checked_split

    split, dropped = load_split(cfg.data, cfg.task.name)
    return checked_split(split, dropped, cfg.data, run_dir, defer=defer)


def checkpoint_scores(run_dir: Path, cfg, split) -> dict[str, float]:
    """best.keras (saved uncompiled) compiled as training compiled it, on the validation split."""
    import keras

    from cvtrain.data.pipeline import build_dataset
    from cvtrain.tasks import get_task

    model = keras.models.load_model(run_dir / rundir.CHECKPOINT, safe_mode=True)
    task = get_task(cfg.task.name)
    loss, metrics = task.loss_and_metrics(
        split.train.class_names, cfg.loss, None, tuple(cfg.data.image_size)
    )
    model.compile(loss=loss, metrics=metrics)
    val = build_dataset(split.val, cfg.data, training=False, seed=0)
    with warnings.catch_warnings():  # ignore_errors hides the size, so Keras warns at its end
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        return model.evaluate(val, verbose=0, return_dict=True)


def train_in_process(root: Path, run_dir: Path, *extra: str):
    from cvtrain.data.sources import load_split
    from cvtrain.state.resume import check_compatible
    from cvtrain.training.trainer import train

    cfg = make_config(*tiny_segmentation(root, *extra))
    split, _ = load_split(cfg.data, cfg.task.name)
    labels = split.train  # as mode=train does
    state = check_compatible(run_dir, cfg, labels.class_names, labels.mask_values)
    return train(cfg, split, run_dir, state), cfg, split


def start_cli(
    root: Path, run_dir: Path, *extra: str, command: Sequence[str] = CVTRAIN
) -> subprocess.Popen:
    """A tiny segmentation training in the background (`command` runs cvtrain's entry point)."""
    args = [*tiny_segmentation(root, *extra), f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_rows(proc: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(history_rows(run_dir)) < rows:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.05)


# Runs cvtrain's entry point and then reports whether TensorFlow got imported.
PROBE = """
import sys
sys.argv = ["cvtrain", *sys.argv[1:]]
from cvtrain.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("TF_IMPORTED" if "tensorflow" in sys.modules else "TF_NOT_IMPORTED")
sys.exit(code)
"""


def run_probe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`cvtrain <args>` in a subprocess whose stdout ends with whether TensorFlow was imported."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def untrained_run(run_dir: Path, *overrides: str, model=None) -> Path:
    """A run dir as evaluate/predict/explain read it, without training: the saved config and an
    untrained `best.keras` (the config's model, or `model`)."""
    from omegaconf import OmegaConf

    from cvtrain.config.schema import to_dict
    from cvtrain.models import build_model

    cfg = make_config(*overrides)
    (run_dir / rundir.SAVED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(to_dict(cfg)), run_dir / rundir.SAVED_CONFIG)
    if model is None:
        model = build_model(cfg.model, (*cfg.data.image_size, 3), 3)
    (run_dir / rundir.CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / rundir.CHECKPOINT)
    return run_dir


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 (for a server a test starts, or finds closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
