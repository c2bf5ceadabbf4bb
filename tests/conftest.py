"""Shared fixtures: configs composed like the CLI does, tiny generated data, the real sample."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cvtrain.cli import config_dir
from cvtrain.config import RunConfig, validate

REPO = Path(__file__).resolve().parent.parent
REAL_SAMPLE = REPO.parent / "shared" / "data" / "oxford_pets_sample"
CVTRAIN = [sys.executable, "-m", "cvtrain"]


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """No test reads or writes the user's ~/.cache/cvtrain."""
    cache = tmp_path_factory.mktemp("cvtrain-cache")
    old = os.environ.get("CVTRAIN_DATA_DIR")
    os.environ["CVTRAIN_DATA_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("CVTRAIN_DATA_DIR", None)
    else:
        os.environ["CVTRAIN_DATA_DIR"] = old


def make_config(*overrides: str) -> RunConfig:
    """Compose and validate a config exactly as `cvtrain <overrides>` would."""
    from cvtrain import cli  # noqa: F401  (registers the schema in Hydra's ConfigStore)

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


@pytest.fixture(scope="session")
def pets_root(tmp_path_factory) -> Path:
    """A small synthetic Oxford-layout dataset (40 pairs), generated once per session."""
    from cvtrain.data.synthetic_pets import generate

    return generate(tmp_path_factory.mktemp("data") / "synthetic_pets", num_samples=40)


# Overrides for a seconds-long segmentation run on `pets_root`. float32 even on a GPU host (where
# precision=auto means mixed_float16), so results compare with tight tolerances everywhere.
def tiny_segmentation(root: Path, *extra: str) -> list[str]:
    return [
        "task=segmentation",
        "data=synthetic_pets",
        f"data.root={root}",
        "data.num_samples=40",
        "data.image_size=[32,32]",
        "data.batch_size=8",
        "data.val_samples=8",
        "model.width=0.25",
        "trainer.epochs=2",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
        *extra,
    ]


# Overrides for a seconds-long two-class run on generated shapes (later overrides win), float32
# as above.
def tiny_classification(root: Path, *extra: str) -> list[str]:
    return [
        "task=classification",
        "data=synthetic_shapes",
        f"data.root={root}",
        "data.num_samples=48",
        "data.image_size=[32,32]",
        "data.batch_size=16",
        "model.width=0.25",
        "trainer.epochs=1",
        "trainer.precision=float32",
        *extra,
    ]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `cvtrain` as a user would, in a subprocess."""
    return subprocess.run(
        [*CVTRAIN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def require_real_sample(path: Path, environ: Mapping[str, str]) -> Path:
    """`path` if the real sample is there; if not, skip the test, or fail it under CI=true: a CI
    run must not pass by skipping the tests that read real data."""
    if (path / "images").is_dir():
        return path
    message = f"{path} is not present"
    if environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{message} (CI=true: real-data tests must run, not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def real_sample() -> Path:
    return require_real_sample(REAL_SAMPLE, os.environ)


def assert_picture(path: Path, size: tuple[int, int]) -> None:
    """A PNG someone can look at: `size` (width, height) in pixels, colour, and not blank."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", size), path.name
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 0, f"{path.name} is blank"
    assert len(np.unique(pixels, axis=0)) >= 8, f"{path.name} has almost no colours"


def train_run(run_dir: Path, *overrides: str) -> Path:
    """Train in-process into `run_dir`, saving .hydra/config.yaml as the CLI's Hydra does, so
    that mode=evaluate/predict/export can load the run."""
    from omegaconf import OmegaConf

    from cvtrain import cli  # noqa: F401  (registers the schema in Hydra's ConfigStore)
    from cvtrain.data.sources import load_split
    from cvtrain.rundir import SAVED_CONFIG
    from cvtrain.train import train

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        raw = compose(config_name="config", overrides=list(overrides))
    (run_dir / SAVED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(raw, run_dir / SAVED_CONFIG)
    cfg = validate(raw)
    split, _ = load_split(cfg.data, cfg.task.name)
    train(cfg, split, run_dir, state=None)  # a new run
    return run_dir


@pytest.fixture
def server():
    """A local archive server on 127.0.0.1 (tests/archives.py), shut down after the test."""
    from archives import ArchiveServer

    s = ArchiveServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
