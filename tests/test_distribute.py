"""Distributed training: strategies, the custom loop, and two workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CVTRAIN, make_config, tiny_segmentation

from cvtrain.config.schema import TrainerConfig
from cvtrain.errors import ConfigError

TESTS = Path(__file__).resolve().parent
QUICK = ("data.limit=24", "trainer.prediction_images=0")  # 16 train / 8 val samples

# Logical CPU devices must be configured before TensorFlow initialises, so this runs in its own
# process: one device, then MirroredStrategy over two logical CPUs with fit() and the custom loop.
MIRRORED_SCRIPT = """
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from conftest import make_config
from cvtrain.data.sources import load_split
from cvtrain.training.distribute import make_strategy
from cvtrain.training.trainer import train

overrides, out = json.loads(sys.argv[2]), Path(sys.argv[3])
variants = {
    "one_device": ["trainer.strategy=one_device"],
    "mirrored": ["trainer.strategy=mirrored"],
    "mirrored_custom": ["trainer.strategy=mirrored", "trainer.loop=custom"],
}
results = {}
for name, extra in variants.items():
    cfg = make_config(*overrides, *extra)
    split, _ = load_split(cfg.data, cfg.task.name)
    replicas = make_strategy(cfg.trainer).num_replicas_in_sync
    history = train(cfg, split, out / name, state=None).history
    results[name] = {"replicas": replicas, **history}
(out / "results.json").write_text(json.dumps(results))
"""


def test_multi_worker_needs_the_custom_loop():
    with pytest.raises(ConfigError, match="trainer.loop=custom"):
        make_config("trainer.strategy=multi_worker")
    with pytest.raises(ConfigError, match="trainer.steps_per_execution"):
        make_config("trainer.steps_per_execution=0")
    with pytest.raises(ConfigError, match="trainer.strategy"):
        make_config("trainer.strategy=tpu")


def test_auto_strategy_follows_tf_config_and_gpus(monkeypatch):
    from cvtrain.training.distribute import strategy_name

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy_name(TrainerConfig(), num_gpus=0) == "one_device"
    assert strategy_name(TrainerConfig(), num_gpus=4) == "mirrored"
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        strategy_name(TrainerConfig(strategy="multi_worker", loop="custom"), num_gpus=0)

    cluster = {"cluster": {"worker": ["h1:1", "h2:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert strategy_name(TrainerConfig(loop="custom"), num_gpus=0) == "multi_worker"
    with pytest.raises(ConfigError, match="trainer.loop=custom"):
        strategy_name(TrainerConfig(), num_gpus=0)  # fit() under TF_CONFIG


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(pets_root, tmp_path):
    """The global batch split over two replicas gives one device's losses, fit() or custom."""
    overrides = tiny_segmentation(pets_root, *QUICK)
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(TESTS), json.dumps(overrides), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["one_device"]["replicas"] == 1
    assert results["mirrored"]["replicas"] == 2
    for name in ("mirrored", "mirrored_custom"):
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(
                results[name][key], results["one_device"][key], rtol=1e-3, err_msg=name
            )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_model(pets_root, tmp_path):
    """MultiWorkerMirroredStrategy through TF_CONFIG: both workers see the same global losses."""
    import keras

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    args = tiny_segmentation(pets_root, "trainer.loop=custom", *QUICK)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "COLUMNS": "200"}
        run_dir = f"hydra.run.dir={tmp_path / f'worker{index}'}"
        procs.append(
            subprocess.Popen(
                [*CVTRAIN, *args, run_dir],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()  # a worker whose peer died would wait for it forever
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "2 replicas" in out

    best = [re.search(r"best val_loss\s*│\s*([\d.]+)", out).group(1) for out in outputs]
    assert best[0] == best[1]  # gradients and metrics are all-reduced across the workers
    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    history = (chief / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs
    assert not (other / "checkpoints").exists()  # only the chief writes artefacts
    model = keras.models.load_model(chief / "checkpoints" / "best.keras", compile=False)
    assert model.predict(np.zeros((2, 32, 32, 3)), verbose=0).shape == (2, 32, 32, 3)
