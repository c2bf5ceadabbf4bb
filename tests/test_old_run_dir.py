"""A run dir written by the release before the package layout changed (commit 0be032d) still
evaluates, predicts, exports and resumes: the run-dir contract and the checkpoint's registered
names did not move with the code. The fixture (tests/fixtures/run_0be032d, how it was made in
its README) is a one-epoch seg_convnet on the tests' synthetic pets (40 samples, 32 px)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, run_cli
from helpers import history_rows
from PIL import Image

from cvtrain import rundir
from cvtrain.inference.export_formats import FORMATS
from cvtrain.modes.evaluate import run as evaluate_run
from cvtrain.modes.export import run as export_run
from cvtrain.modes.predict import run as predict_run
from cvtrain.tasks.segmentation import MASKS

OLD_RUN = Path(__file__).resolve().parent / "fixtures" / "run_0be032d"

pytestmark = pytest.mark.slow


@pytest.fixture
def old_run(tmp_path) -> Path:
    skip = shutil.ignore_patterns("README*")
    return Path(shutil.copytree(OLD_RUN, tmp_path / "run", ignore=skip))


def test_an_old_run_evaluates_to_its_logged_metrics_predicts_and_exports(
    old_run, pets_root, tmp_path
):
    data = [f"data.root={pets_root}"]
    cfg = make_config("mode=evaluate", f"run={old_run}", *data)
    evaluate_run(cfg, data, tmp_path)
    measured = rundir.read_json(old_run / rundir.EVAL / rundir.METRICS)["metrics"]
    logged = rundir.read_json(old_run / rundir.METRICS)["best"]
    assert measured["loss"] == pytest.approx(logged["val_loss"], abs=1e-3)
    assert measured["mean_iou"] == pytest.approx(logged["val_mean_iou"], abs=1e-3)

    photo = next((pets_root / "images").glob("*.jpg"))
    cfg = make_config("mode=predict", f"run={old_run}", f"input={photo}", f"output={tmp_path}")
    predict_run(cfg, [], tmp_path)
    mask = np.asarray(Image.open(tmp_path / MASKS / f"{photo.stem}.png"))
    assert mask.shape == np.asarray(Image.open(photo)).shape[:2]
    assert set(np.unique(mask)) <= {1, 2, 3}  # trimap values

    scratch = old_run / rundir.EXPORT / ".saved_model-k7f3q_1x"  # an export killed mid-way
    (scratch / "saved_model").mkdir(parents=True)
    cfg = make_config("mode=export", f"run={old_run}", "format=keras")
    result = export_run(cfg, [], tmp_path)
    assert result.max_abs_diff <= FORMATS["keras"].tolerance
    assert [p.name for p in (old_run / rundir.EXPORT).iterdir()] == ["model.keras"]


def test_an_old_run_resumes_from_its_saved_state(old_run, pets_root):
    # What a write killed mid-way leaves behind (atomic_path's temp files): cleaned on resume.
    leftovers = [
        old_run / "checkpoints" / ".best.keras.k3x_9q2a.keras",
        old_run / "backup" / ".epoch-2.npz.a1b2c3d4.npz",
    ]
    for path in leftovers:
        path.write_bytes(b"half a file")
    result = run_cli(f"resume={old_run}", f"data.root={pets_root}", "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after epoch 1" in (old_run / "cvtrain.log").read_text()
    assert [row["epoch"] for row in history_rows(old_run)] == ["0", "1"]
    assert rundir.read_json(old_run / rundir.METRICS)["epochs_run"] == 2
    assert not any(path.exists() for path in leftovers)
