"""Shared fixtures: configs composed like the CLI does, tiny generated data, the real sample."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cvtrain.cli.main import config_dir
from cvtrain.cli.validate import validate
from cvtrain.config.schema import RunConfig

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
    from cvtrain.cli import main  # noqa: F401  (registers the schema in Hydra's ConfigStore)

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

    from cvtrain.cli import main  # noqa: F401  (registers the schema in Hydra's ConfigStore)
    from cvtrain.data.sources import load_split
    from cvtrain.rundir import SAVED_CONFIG
    from cvtrain.training.trainer import train

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        raw = compose(config_name="config", overrides=list(overrides))
    (run_dir / SAVED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(raw, run_dir / SAVED_CONFIG)
    cfg = validate(raw)
    split, _ = load_split(cfg.data, cfg.task.name)
    train(cfg, split, run_dir, state=None)  # a new run
    return run_dir


# Trained runs shared by several test modules (each one costs seconds of graph tracing). Tests
# read them and write only below their own tmp_path, or into the run's eval/ or export/ folders.

# The model matrix's training (tests/test_model_matrix.py): one epoch on 8 training and 8
# validation images (a fifth of 16 validates classification), no per-epoch pictures.
FEW = ("data.limit=16", "trainer.epochs=1", "trainer.prediction_images=0")
SEG_CONVNET = ("model=seg_convnet", "model.filters=[8,16]")  # two narrow stages: quick to export
# A keras.applications backbone inside (no stages to narrow: `~` drops the tiny model.width).
XCEPTION = ("model=xception", "~model.width", "data.image_size=[72,72]")
FROZEN_DEEPLAB = (
    "model=deeplabv3plus",
    "model.backbone=mobilenetv2",
    "model.freeze_backbone=true",
    "model.filters=[16,8]",
    "model.atrous_rates=[1,2]",
    "data.image_size=[32,32]",
)


@pytest.fixture(scope="session")
def seg_convnet_run(pets_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """(run dir, its overrides): the model matrix's seg_convnet, exported by test_export.py."""
    overrides = tiny_segmentation(pets_root, *SEG_CONVNET, *FEW)
    return train_run(tmp_path_factory.mktemp("seg_convnet") / "run", *overrides), overrides


@pytest.fixture(scope="session")
def frozen_deeplab_run(pets_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """(run dir, its overrides): DeepLabV3+ on a frozen MobileNetV2, the model matrix's
    deeplabv3plus_mobilenetv2 and test_segmentation_models.py's frozen-backbone run."""
    overrides = tiny_segmentation(pets_root, *FROZEN_DEEPLAB, *FEW)
    return train_run(tmp_path_factory.mktemp("frozen_deeplab") / "run", *overrides), overrides


@pytest.fixture(scope="session")
def seg_runs(pets_root, tmp_path_factory) -> list[Path]:
    """Two tiny segmentation runs that differ only in their seed (run_a: 1, run_b: 2): three
    epochs at a higher rate, so the models predict more than the majority class."""
    base = tmp_path_factory.mktemp("seg_runs")
    training = ("trainer.epochs=3", "optimizer.lr=3e-3")
    return [
        train_run(base / name, *tiny_segmentation(pets_root, *training, f"trainer.seed={seed}"))
        for name, seed in (("run_a", 1), ("run_b", 2))
    ]


@pytest.fixture(scope="session")
def shape_runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Two two-class classifiers trained for two epochs with different seeds (1, 2) on one
    generated folder (returned first), so their outputs differ."""
    base = tmp_path_factory.mktemp("shape_runs")
    runs = [
        train_run(
            base / f"run_{seed}",
            *tiny_classification(base / "shapes", "trainer.epochs=2", f"trainer.seed={seed}"),
        )
        for seed in (1, 2)
    ]
    return base / "shapes", runs


@pytest.fixture(scope="session")
def xception_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run dir, its generated shapes folder): the xception classifier (a keras.applications
    backbone nested in the model) at 72 px, trained as FEW says: the model matrix's xception and
    test_explain.py's."""
    base = tmp_path_factory.mktemp("xception")
    shapes = base / "shapes"
    overrides = tiny_classification(shapes, *XCEPTION, *FEW, "data.batch_size=8")
    return train_run(base / "run", *overrides), shapes


@pytest.fixture(scope="session")
def cli_seg_run(pets_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`cvtrain <tiny segmentation>` run as a user runs it, with TF_CPP_MIN_LOG_LEVEL unset (as in
    a fresh shell; importing cvtrain here set it): (run dir, the finished process)."""
    from cvtrain.cli.tf_logging import LEVEL_ENV

    run = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as env:
        env.delenv(LEVEL_ENV, raising=False)
        proc = run_cli(*tiny_segmentation(pets_root), f"hydra.run.dir={run}")
    return run, proc


@pytest.fixture(scope="session")
def adam_run(pets_root, tmp_path_factory):
    """(TrainResult, config, split, run dir): four epochs of Adam on the tiny segmentation data,
    trained through train() as mode=train does (test_train.py, test_resume.py)."""
    from cvtrain.data.sources import load_split
    from cvtrain.training.trainer import train

    run_dir = tmp_path_factory.mktemp("adam") / "run"
    cfg = make_config(*tiny_segmentation(pets_root, "trainer.epochs=4", "optimizer=adam"))
    split, _ = load_split(cfg.data, cfg.task.name)
    return train(cfg, split, run_dir, state=None), cfg, split, run_dir


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(run dir, its overrides): one epoch at 64 px on the real sample (400 training and 51
    validation pairs), float32 so that results compare tightly on a GPU host too
    (test_real_sample.py, test_predict.py). Skipped like `real_sample` when it is missing."""
    root = require_real_sample(REAL_SAMPLE, os.environ)
    overrides = [
        "task=segmentation",
        "data=oxford_pets",
        f"data.root={root}",
        "data.image_size=[64,64]",
        "data.val_samples=51",
        "data.batch_size=32",
        "model.width=0.25",
        "trainer.epochs=1",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
    ]
    return train_run(tmp_path_factory.mktemp("real") / "run", *overrides), overrides


def mlflow_overrides(folder: Path) -> list[str]:
    """tracking=mlflow with a private SQLite store and artefact folder under `folder`."""
    return [
        "tracking=mlflow",
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        f"tracking.artifact_location={folder}/mlartifacts",
    ]


@pytest.fixture(scope="session")
def grid_sweep(pets_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, Path]:
    """A 2x2 grid through the CLI: optimizer.lr x model.dropout, one epoch each, tracked with
    MLflow: (sweep dir, the finished process, the folder of its MLflow store)."""
    base = tmp_path_factory.mktemp("grid")
    sweep = base / "sweep"
    proc = run_cli(
        "-m",
        *tiny_segmentation(pets_root, "trainer.epochs=1", "trainer.prediction_images=0"),
        *mlflow_overrides(base),
        "optimizer.lr=1e-3,3e-3",
        "model.dropout=0,0.2",
        f"hydra.sweep.dir={sweep}",
        cwd=base,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep, proc, base


@pytest.fixture
def server():
    """A local archive server on 127.0.0.1 (tests/archives.py), shut down after the test."""
    from archives import ArchiveServer

    s = ArchiveServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
